import Synchronization

/// A Swift handler of a hypercall: its value becomes the hypercall's result.
/// `nonisolated(nonsending)`: it runs on the executor of the task that calls
/// it, the conversation's own, so none of its awaits switches executors.
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
final class AsyncWork: ConversationWork, TaskExecutor, @unchecked Sendable {
    typealias Body = GuestHandler

    private let body: Body
    /// The task's next job, waiting to run on the trapping thread.
    private var job: UnownedJob?
    /// Jobs that arrived while `job` was still waiting: the handler runs
    /// more than one task on this conversation (`async let` or a task group
    /// over guest operations, which `Guest` not being `Sendable` normally
    /// refuses at compile time). They all run, none is dropped, and the
    /// conversation fails with `GuestError.concurrentOperation`.
    private var extraJobs: [UnownedJob] = []
    /// Set when a second job arrived while one was pending.
    private var concurrent = false
    /// The handler's pending guest operation.
    private var continuation: UnsafeContinuation<PortalResponse, any Error>?
    /// What the handler did since it was last resumed.
    private var step: WorkStep?
    /// Set once the conversation is over: later guest operations throw (and
    /// never touch the direct view of memory: a job that runs after this is
    /// set may run on another thread).
    private(set) var ended = false
    /// Set when the handler suspended on something other than the guest: its
    /// jobs will arrive from other threads, and run where they arrive.
    private let detached = Atomic<Bool>(false)

    init(_ body: @escaping Body) { self.body = body }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if detached.load(ordering: .acquiring) {
            job.runSynchronously(on: asUnownedTaskExecutor())
        } else if self.job == nil {
            self.job = job
        } else {
            concurrent = true
            extraJobs.append(job)
        }
    }

    private func runUntilSuspended() {
        while true {
            if let next = job {
                job = nil
                next.runSynchronously(on: asUnownedTaskExecutor())
            } else if !extraJobs.isEmpty {
                extraJobs.removeFirst().runSynchronously(on: asUnownedTaskExecutor())
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
        ended = true
        guard let pending = continuation else { return }
        continuation = nil
        pending.resume(throwing: reason)
        runUntilSuspended()
        step = nil
    }

    private func takeStep() -> WorkStep {
        if concurrent { return refuseConcurrency() }
        if let step = step.take() { return step }
        ended = true
        detached.store(true, ordering: .releasing)
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
    nonisolated(nonsending) func exchange(_ command: PortalCommand) async throws -> PortalResponse {
        if ended { throw PortalError.conversationEnded }
        if continuation != nil { throw GuestError.concurrentOperation }
        return try await withUnsafeThrowingContinuation { continuation in
            self.continuation = continuation
            self.step = .command(command)
        }
    }
}
