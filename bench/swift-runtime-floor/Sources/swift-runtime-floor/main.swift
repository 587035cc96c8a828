// What the Swift concurrency runtime alone costs per round trip of a Swift
// handler, as libportal.so runs one: no engine, no guest, no region. A task
// prefers an executor that keeps its next job; the "trap" resumes the task's
// continuation with an answer and runs that job on its own thread, and the
// task runs up to its next await of a continuation. Every runtime call of the
// engine's path is here, in the same order (PortalEngine's AsyncWork):
// `Task(executorPreference:)`, `_unsafeInheritExecutor_withUnsafeThrowingContinuation`
// in a `nonisolated(nonsending)` exchange awaited through a `nonisolated(nonsending)`
// read, `resume(returning:)`, `runSynchronously(on:)` of the task executor.
//
//   swift-runtime-floor --trips N [--reps R]
//
// prints one line per repetition: {"ns_per_round_trip": X}. Under
// `valgrind --tool=callgrind --toggle-collect='*roundTrips*'` two runs of
// different N, differenced, give the instructions per round trip.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The handler's executor and its pending guest operation, as AsyncWork
/// keeps them.
final class InlineWork: TaskExecutor, @unchecked Sendable {
    /// The task's next job as `UnownedJob` bits, 0 for none.
    private let pending = Atomic<UInt>(0)
    private var continuation: UnsafeContinuation<UInt64, any Error>?

    func enqueue(_ job: consuming ExecutorJob) {
        pending.store(unsafeBitCast(UnownedJob(job), to: UInt.self), ordering: .releasing)
    }

    func runUntilSuspended() {
        while true {
            let bits = pending.exchange(0, ordering: .acquiringAndReleasing)
            if bits == 0 { return }
            unsafeBitCast(bits, to: UnownedJob.self).runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    nonisolated(nonsending) func exchange() async throws -> UInt64 {
        try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { self.continuation = $0 }
    }

    /// One round trip's runtime work: the answer handed over, the handler
    /// run to its next await.
    func answer(_ value: UInt64) {
        guard let waiting = continuation.take() else { return }
        waiting.resume(returning: value)
        runUntilSuspended()
    }

    /// Ends the handler's loop.
    func finish() {
        guard let waiting = continuation.take() else { return }
        waiting.resume(throwing: CancellationError())
        runUntilSuspended()
    }
}

nonisolated(nonsending) func read(_ work: InlineWork) async throws -> UInt64 {
    try await work.exchange()
}

/// What the handler adds up, so that no read is optimised away.
nonisolated(unsafe) var total: UInt64 = 0

@inline(never)
func roundTrips(_ work: InlineWork, _ count: Int) {
    for trip in 0..<count { work.answer(UInt64(trip)) }
}

func nanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

func argument(_ name: String, default value: Int) -> Int {
    let arguments = CommandLine.arguments
    guard let at = arguments.firstIndex(of: name), at + 1 < arguments.count, let number = Int(arguments[at + 1]),
          number > 0 else { return value }
    return number
}

let trips = argument("--trips", default: 2_000_000)
let reps = argument("--reps", default: 1)
for _ in 0..<reps {
    let work = InlineWork()
    Task(executorPreference: work) {
        do {
            while true { total &+= try await read(work) }
        } catch {}
    }
    work.runUntilSuspended()
    let started = nanoseconds()
    roundTrips(work, trips)
    let elapsed = nanoseconds() - started
    work.finish()
    print("{\"ns_per_round_trip\": \(Double(elapsed) / Double(trips))}")
}
