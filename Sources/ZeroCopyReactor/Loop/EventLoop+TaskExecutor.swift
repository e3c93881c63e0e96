// The loop as a TaskExecutor: a task that prefers a loop (`Task(executorPreference: loop)`, which `serve` uses for
// each connection's handler) runs its nonisolated code on that loop's thread, between the loop's own callbacks. A
// consumer resumed by a read, or a writer resumed by writability, then continues on the thread that resumed it, in
// the same iteration: no hop to the cooperative pool and back, no wake-up, and no allocation (the job goes into an
// array the loop keeps and reuses; the global executor's queue allocates a node for every job).
//
// Where a job goes:
// - enqueued on the loop's own thread: onto `localJobs`, run by `runJobs` after this iteration's events;
// - enqueued by another thread: into the inbox (one lock with `execute`'s closures), then a wake-up;
// - once the loop has finished: to the global concurrent executor, so that a task whose loop ended still runs to
//   its end instead of hanging (its later jobs keep coming here and keep going there).
// A job is run with `runSynchronously(on:)` this executor, so the runtime knows which executor the task is on.
//
// A handler that blocks its thread therefore blocks every connection of its loop; work that blocks belongs on
// another executor (see `ReactorPool.serve(handlerExecutor:)`).
//
// Not tried with task groups again: Swift 6.3.1 hangs when a child of a `DiscardingTaskGroup` that prefers a custom
// executor completes there (a loop thread blocks for good in the runtime's withStatusRecordLock, under
// _swift_taskGroup_detachChild, from DiscardingTaskGroup::offer). Re-checked this session: `serve` built on such a
// group stalls on its first connection (HandlerPlacementTests fails: the echo never comes), while two standalone
// reductions (a thread executor with 10,000 children that yield; an AsyncStream-fed group whose children park on
// continuations the executor's thread resumes) complete every run, so the trigger is narrower than either. `serve`
// uses unstructured tasks and keeps their handles itself (ReactorPool+Async.swift).

extension EventLoop: TaskExecutor {
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if inLoop {
            // `finished` is written by this thread only: no lock needed to read it here.
            if finished {
                globalConcurrentExecutor.enqueue(ExecutorJob(job))
            } else {
                localJobs.append(job)
            }
            return
        }
        let accepted = inbox.withLock { queue -> Bool in
            if finished { return false }
            queue.jobs.append(job)
            return true
        }
        if accepted {
            wake()
        } else {
            globalConcurrentExecutor.enqueue(ExecutorJob(job))
        }
    }
}
