#if canImport(Glibc)
import Glibc
#endif

/// Sees every conversation start and end and every round trip: what the
/// trace (`trace=PATH`) and the statistics (`query-stats`) are made from.
///
/// The engine holds at most one recorder, fixed when it is created: with
/// none, each hook is one never-taken branch on a constant. With one, its
/// methods run on the trapping vCPU's thread, inside the trap: they must
/// be quick and must not call back into the engine.
public protocol PortalRecorder: AnyObject, Sendable {
    /// A conversation started (its work was created).
    /// - Parameters:
    ///   - site: its hypercall, vCPU and region.
    func conversationStarted(at site: TrapSite)
    /// A conversation ended.
    /// - Parameters:
    ///   - site: its hypercall, the vCPU that ended it, and its region.
    ///   - failure: nil when its work finished; otherwise why it was ended
    ///     (`.abandoned` and `.neverCameBack` mean the engine reclaimed it).
    func conversationEnded(at site: TrapSite, failure: PortalError?)
    /// One command and the guest's answer to it.
    /// - Parameter roundTrip: what was sent and what came back.
    func roundTrip(_ roundTrip: RoundTrip)
}

/// One command of a conversation and the guest's answer to it.
public struct RoundTrip: Sendable {
    /// The hypercall, the vCPU that carried the answer, and the region.
    public var site: TrapSite
    /// The op sent.
    public var op: UInt32
    /// The command's address and size, as sent.
    public var address: UInt64
    public var size: Int64
    /// The guest's answer.
    public var response: ResponseCode
    /// Payload bytes the answer carried (READ_OK, READ_PARTIAL), else 0.
    public var payloadBytes: Int
    /// Host monotonic nanoseconds from writing the command to the answer's trap.
    public var nanoseconds: UInt64
}

/// What a conversation last sent, kept only while a recorder is installed.
struct SentCommand {
    var op: UInt32 = 0
    var address: UInt64 = 0
    var size: Int64 = 0
    /// Monotonic nanoseconds when it was written.
    var at: UInt64 = 0
}

/// Monotonic host time in nanoseconds.
@inline(__always)
func monotonicNow() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}
