#if canImport(Glibc)
import Glibc
#endif

/// Sees every conversation start and end and every round trip: what the
/// trace (`trace=PATH`) and the statistics (`query-stats`) are made from.
///
/// The engine holds at most one recorder, fixed when it is created; with
/// none, nothing is added to any path. With one, its methods run on the
/// trapping vCPU's thread, inside the trap: they must be quick and must not
/// call back into the engine.
package protocol PortalRecorder: AnyObject, Sendable {
    /// A conversation started (its work was created).
    /// - Parameters:
    ///   - site: its hypercall, vCPU and region.
    func conversationStarted(at site: TrapSite)
    /// A conversation ended.
    /// - Parameters:
    ///   - site: its hypercall, the vCPU that started it, and its region.
    ///   - failure: nil when its work finished; otherwise why it was ended
    ///     (``ConversationEnding`` tells a reclaimed one from a failed one).
    func conversationEnded(at site: TrapSite, failure: PortalError?)
    /// One command and the guest's answer to it.
    /// - Parameter roundTrip: what was sent and what came back.
    func roundTrip(_ roundTrip: RoundTrip)
}

/// How a conversation ended, as `query-stats` counts it and the trace's
/// `outcome` says: one rule for both, so they always agree.
package enum ConversationEnding: String, Sendable {
    /// Its work finished.
    case finished
    /// The engine took it back from a guest that left it waiting: a new
    /// conversation on its region (`abandoned`), no trap for it while
    /// `stale_after` others started waiting (`never-came-back`), or a full
    /// waiting table that needed its place (`reclaimed-for-room`). The
    /// guest, not the conversation's work, decided its end.
    case reclaimed
    /// Anything else: the work failed, the guest broke the protocol, the
    /// plugin unloaded while it waited.
    case failed

    /// Sorts an ending.
    /// - Parameter failure: nil when the work finished, else why the
    ///   conversation was ended (as `PortalRecorder.conversationEnded` gets it).
    package init(failure: PortalError?) {
        switch failure?.code {
        case nil: self = .finished
        case .abandoned?, .neverCameBack?, .reclaimedForRoom?: self = .reclaimed
        default: self = .failed
        }
    }
}

/// One command of a conversation and the guest's answer to it.
package struct RoundTrip: Sendable {
    /// The conversation's hypercall, the vCPU that started it, and its region.
    package var site: TrapSite
    /// The op sent.
    package var op: UInt32
    /// The command's address, masked to the guest's width.
    package var address: UInt64
    /// The command's size as the work gave it (the engine clamps it when writing).
    package var size: Int64
    /// The guest's answer.
    package var response: ResponseCode
    /// Payload bytes the answer carried (READ_OK, READ_PARTIAL), else 0.
    package var payloadBytes: Int
    /// Host monotonic nanoseconds from writing the command to the answer's trap.
    package var nanoseconds: UInt64
}

/// Wraps a conversation's work when a recorder is installed, and reports
/// what passes through: the start, each command with the answer to it, and
/// the end. Every way a conversation ends reaches the work either as its
/// own final step (finished) or as `cancel` (failed, reclaimed, unloaded),
/// so the engine itself needs no hook on its round-trip path.
final class RecordedWork: ConversationWork {
    private let inner: any ConversationWork
    private let recorder: any PortalRecorder
    /// The command waiting for its answer.
    private var sentOp: UInt32 = 0
    private var sentAddress: UInt64 = 0
    private var sentSize: Int64 = 0
    private var sentAt: UInt64 = 0

    init(_ inner: any ConversationWork, recorder: any PortalRecorder) {
        self.inner = inner
        self.recorder = recorder
    }

    func start(_ conversation: Conversation) -> WorkStep {
        recorder.conversationStarted(at: conversation.site)
        return observe(conversation, inner.start(conversation))
    }

    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        recorder.roundTrip(RoundTrip(
            site: conversation.site, op: sentOp, address: sentAddress, size: sentSize, response: response.code,
            payloadBytes: response.code.carriesPayload ? response.payload.count : 0,
            nanoseconds: monotonicNow() &- sentAt))
        return observe(conversation, inner.resume(conversation, with: response))
    }

    func cancel(_ conversation: Conversation, because reason: PortalError) {
        recorder.conversationEnded(at: conversation.site, failure: reason)
        inner.cancel(conversation, because: reason)
    }

    /// Notes a command on its way out, and a normal end. A failing step is
    /// reported by the `cancel` the engine answers it with.
    private func observe(_ conversation: Conversation, _ step: consuming WorkStep) -> WorkStep {
        switch consume step {
        case .command(let command):
            sentOp = command.op
            sentAddress = command.address & conversation.layout.addressMask
            sentSize = command.size
            sentAt = monotonicNow()
            return .command(command)
        case .finished(let value):
            recorder.conversationEnded(at: conversation.site, failure: nil)
            return .finished(value)
        case .failed(let error):
            return .failed(error)
        }
    }
}

/// Monotonic host time in nanoseconds.
func monotonicNow() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}
