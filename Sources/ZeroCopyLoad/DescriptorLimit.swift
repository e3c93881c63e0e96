// RLIMIT_NOFILE for a run: raised as far as allowed before the first connect, with a line for the report when it is
// still below what the run needs. Touches only this process's limit; never closes or counts descriptors.
import Glibc

/// Raised before connecting, so 10,000 connections do not die of EMFILE.
enum DescriptorLimit {
    /// Raises the soft limit to the hard one when `needed` is above it (and the hard one too, when permitted).
    /// Returns the soft limit now in force and, when it is still below `needed`, a line saying so.
    static func raise(toFit needed: Int) -> (limit: Int, note: String?) {
        var rl = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &rl) == 0 else { return (0, "cannot read the descriptor limit") }
        if rl.rlim_cur < rlim_t(needed) {
            if rl.rlim_max < rlim_t(needed) {
                var higher = rlimit(rlim_cur: rlim_t(needed), rlim_max: rlim_t(needed))
                if setrlimit(RLIMIT_NOFILE_VALUE, &higher) == 0 { rl = higher }
            }
            if rl.rlim_cur < rlim_t(needed) {
                var raised = rlimit(rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max)
                if setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { rl = raised }
            }
        }
        let limit = rl.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(rl.rlim_cur)
        guard limit < needed else { return (limit, nil) }
        return (
            limit,
            "descriptor limit is \(limit) (hard \(rl.rlim_max)), below the \(needed) this run needs: "
                + "expect EMFILE (raise it with `ulimit -n`)"
        )
    }

    private static var RLIMIT_NOFILE_VALUE: __rlimit_resource_t { __rlimit_resource_t(RLIMIT_NOFILE.rawValue) }
}
