import Synchronization

/// A Swift handler of a hypercall: its value becomes the hypercall's result.
/// `nonisolated(nonsending)`: it runs on the executor of its caller, the
/// conversation's own, so none of its awaits switches executors.
public typealias GuestHandler = nonisolated(nonsending) @Sendable (Guest) async throws -> UInt64

/// A Swift interrupt handler.
public typealias InterruptHandler = nonisolated(nonsending) @Sendable (Guest) async throws -> Void

/// Runs a Swift `async` handler as conversation work, synchronously on the
/// thread of the vCPU that trapped.
///
/// The handler's task prefers this object as its executor, so every job of
/// the task lands in `enqueue` on the thread that resumed it, and
/// `runUntilSuspended` runs it right there: starting the handler or handing
/// it an answer runs it up to its next guest operation (or its end) before
/// the hypercall returns. No other thread, no global executor, and the same
/// guest behaviour always gives the same interleaving.
///
/// A task executor preference, not an actor on a custom serial executor
/// (which would spare the runtime's preference look-ups, a per-task lock
/// each): a continuation always resumes its task on the generic executor,
/// which without a preference is the global pool, so the handler would
/// continue on another thread after the trap returned (README, Performance).
final class AsyncWork: ConversationWork, TaskExecutor, @unchecked Sendable {
    typealias Body = GuestHandler

    private let body: Body
    /// The task's next job, as `UnownedJob` bits (0: none), or
    /// `Self.detachedMark` once the handler awaited something other than the
    /// guest. Atomic because a job may arrive from any thread that resumes
    /// the handler: the trapping thread and a foreign one hand it over here,
    /// and whoever swaps `detachedMark` in (`takeStep`) takes a job that
    /// arrived first.
    private let pending = Atomic<UInt>(0)
    /// Jobs that arrived while `pending` held one: the handler runs more
    /// than one task on this conversation (`async let` or a task group over
    /// guest operations, which `Guest` not being `Sendable` normally refuses
    /// at compile time). They all run, none is dropped, and the conversation
    /// fails with `GuestError.concurrentOperation`. Such a job may come
    /// from any thread: only touched inside `withExtraJobs`.
    private var extraJobs: [UnownedJob] = []
    /// Held while `extraJobs` is touched. A spin flag, not a `Lock`: a
    /// `Lock` is two allocations more per conversation, for a path only a
    /// misbehaving handler takes (and, unlike `Mutex`, ThreadSanitizer sees
    /// its atomics).
    private let extraJobsHeld = Atomic<Bool>(false)
    /// Set when a job went to `extraJobs`.
    private let concurrent = Atomic<Bool>(false)
    /// The handler's pending guest operation.
    private var continuation: UnsafeContinuation<PortalResponse, any Error>?
    /// What the handler did since it was last resumed.
    private var step: WorkStep?
    /// Set once the conversation is over: later guest operations throw (and
    /// never touch the direct view of memory: a job that runs after this is
    /// set may run on another thread).
    private(set) var ended = false
    /// Set by the trapping thread when the handler awaited something other
    /// than the guest (only that thread reads it): from then on the
    /// handler's jobs run on the threads that resume it, and the work is
    /// theirs.
    private var detached = false

    /// `pending` once the handler's jobs run where they arrive.
    private static let detachedMark: UInt = 1

    init(_ body: @escaping Body) { self.body = body }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let bits = unsafeBitCast(job, to: UInt.self)
        let (stored, found) = pending.compareExchange(expected: 0, desired: bits, ordering: .acquiringAndReleasing)
        if stored { return }
        if found == Self.detachedMark {
            job.runSynchronously(on: asUnownedTaskExecutor())
        } else {
            withExtraJobs { $0.append(job) }
            concurrent.store(true, ordering: .releasing)
        }
    }

    private func withExtraJobs<Result>(_ body: (inout [UnownedJob]) -> Result) -> Result {
        while !extraJobsHeld.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {}
        defer { extraJobsHeld.store(false, ordering: .releasing) }
        return body(&extraJobs)
    }

    private func runUntilSuspended() {
        while true {
            let bits = pending.exchange(0, ordering: .acquiringAndReleasing)
            if bits != 0 {
                unsafeBitCast(bits, to: UnownedJob.self).runSynchronously(on: asUnownedTaskExecutor())
            } else if concurrent.load(ordering: .acquiring),
                      let extra = withExtraJobs({ $0.isEmpty ? nil : $0.removeFirst() }) {
                extra.runSynchronously(on: asUnownedTaskExecutor())
            } else {
                return
            }
        }
    }

    func start(_ conversation: Conversation) -> WorkStep {
        let guest = Guest(work: self, conversation: conversation)
        Task(executorPreference: self) { [body] in
            do {
                let value = try await body(guest)
                self.step = .finished(value)
            } catch {
                self.step = .failed(error)
            }
            self.ended = true
        }
        runUntilSuspended()
        return takeStep()
    }

    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        guard let pending = continuation else { return .failed(PortalError.conversationEnded) }
        continuation = nil
        pending.resume(returning: response)
        runUntilSuspended()
        return takeStep()
    }

    func cancel(_ conversation: Conversation, because reason: PortalError) {
        // A detached handler is its resuming threads' business: `takeStep`
        // set `ended` before it let go, so its next guest operation throws.
        guard !detached else { return }
        ended = true
        guard let pending = continuation else { return }
        continuation = nil
        pending.resume(throwing: reason)
        runUntilSuspended()
        step = nil
    }

    private func takeStep() -> WorkStep {
        if concurrent.load(ordering: .acquiring) { return refuseConcurrency() }
        if let step = step.take() { return step }
        // Suspended on something else: from here its jobs run where they
        // arrive. One that arrived before the mark runs here, now.
        ended = true
        detached = true
        let arrived = pending.exchange(Self.detachedMark, ordering: .acquiringAndReleasing)
        if arrived != 0 {
            unsafeBitCast(arrived, to: UnownedJob.self).runSynchronously(on: asUnownedTaskExecutor())
        }
        return .failed(PortalError.suspendedOutsideGuest)
    }

    /// The handler ran guest operations from more than one task: the
    /// operation still waiting is ended with the error, every task runs to
    /// its end (none is left suspended), and the conversation fails.
    private func refuseConcurrency() -> WorkStep {
        ended = true
        if let pending = continuation {
            continuation = nil
            pending.resume(throwing: GuestError.concurrentOperation)
        }
        runUntilSuspended()
        step = nil
        return .failed(GuestError.concurrentOperation)
    }

    /// Sends `command` and suspends the handler until the guest answers.
    /// `command` is moved into the step, not copied (nothing reads the
    /// step before the handler has suspended).
    nonisolated(nonsending) func exchange(_ command: consuming PortalCommand) async throws -> PortalResponse {
        if ended { throw PortalError.conversationEnded }
        if continuation != nil { throw GuestError.concurrentOperation }
        step = .command(command)
        // Not `withUnsafeThrowingContinuation`: its `isolation` parameter
        // makes it hop to the caller's isolation first, one more executor
        // check and preference look-up per round trip (287 instructions,
        // callgrind). This variant runs where `exchange` runs, which is
        // already that isolation.
        return try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { continuation in
            self.continuation = continuation
        }
    }
}
