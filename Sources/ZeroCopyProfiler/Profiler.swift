// The allocation profiler (issue: `zcr profile`): reads jemalloc through mallctl found at run time.
// Placeholder until the profiler lands.
import ZeroCopyReactor

public enum ProfilerModule {}
