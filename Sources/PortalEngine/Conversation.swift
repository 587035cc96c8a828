import Synchronization

/// The hypercall registers as the emulator read them.
public struct Hypercall: Sendable, Equatable {
    /// The number register, full width.
    public var rawNumber: UInt64
    public var arg1: UInt64
    public var arg2: UInt64
    /// The region address for hypercalls that run conversations.
    public var arg3: UInt64
    /// 0 on a conversation's first trap, then the guest's answer.
    public var arg4: UInt64
    /// The vCPU that trapped.
    public var vcpu: Int

    public init(number: UInt64, arg1: UInt64 = 0, arg2: UInt64 = 0, arg3: UInt64 = 0,
                arg4: UInt64 = 0, vcpu: Int = 0) {
        self.rawNumber = number
        self.arg1 = arg1
        self.arg2 = arg2
        self.arg3 = arg3
        self.arg4 = arg4
        self.vcpu = vcpu
    }

    public var number: HypercallNumber { HypercallNumber(register: rawNumber) }
}

/// Work a conversation runs. The engine asks for its first step, then hands
/// it each answer; the work never touches guest memory itself.
public protocol ConversationWork: AnyObject {
    func start(_ conversation: Conversation) -> WorkStep
    /// `response.payload` is valid during this call only.
    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep
    /// The conversation ended before the work did (the guest abandoned it,
    /// answered nonsense, or the plugin is unloading): let go of everything.
    func cancel(_ conversation: Conversation, because reason: PortalError)
}

/// One conversation between a piece of work and the guest, identified by the
/// guest page it uses. Only the vCPU that holds its claim touches it.
public final class Conversation: @unchecked Sendable {
    /// The hypercall that started it (its vCPU may differ from later traps').
    public let call: Hypercall
    public let regionAddress: UInt64
    /// The engine outlives its conversations (shutdown ends them all), so
    /// this reference needs no reference counting on the round-trip path.
    public unowned(unsafe) let engine: PortalEngine
    /// Set for PORTAL_INTERRUPT conversations: the window's install budget.
    public let window: InterruptWindow?

    var machine = ConversationStateMachine()
    let work: any ConversationWork

    /// The engine's count of conversations that had started waiting when
    /// this one last heard from the guest (see `stale_after`).
    let lastHeard = Atomic<UInt64>(0)
    /// Whether it is in the engine's table of waiting conversations. Set and
    /// cleared under the table's lock, by whoever holds the claim.
    var isWaiting = false
    /// The waiting table's order (under its lock): the neighbours queued
    /// before and after it, and the `lastHeard` stamp it was queued with.
    unowned(unsafe) var olderWaiting: Conversation?
    unowned(unsafe) var newerWaiting: Conversation?
    var queuedAt: UInt64 = 0

    /// Who may touch this conversation: exactly one trapping vCPU at a time.
    let claim = Atomic<UInt8>(Claim.busy)
    enum Claim {
        static let idle: UInt8 = 0
        static let busy: UInt8 = 1
        static let ended: UInt8 = 2
    }

    init(call: Hypercall, engine: PortalEngine, window: InterruptWindow?, work: any ConversationWork) {
        self.call = call
        self.regionAddress = call.arg3
        self.engine = engine
        self.window = window
        self.work = work
    }

    public var site: TrapSite {
        TrapSite(number: call.number, vcpu: call.vcpu, regionAddress: regionAddress)
    }

    public var layout: GuestLayout { engine.layout }
    public var ops: OpTable { engine.configuration.ops }
    /// Payload bytes one command or answer can carry, as registered by the guest.
    public var regionSize: Int { engine.regionSize }
}
