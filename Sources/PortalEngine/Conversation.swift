import Synchronization

/// The hypercall registers as the emulator read them.
public struct Hypercall: Sendable, Equatable {
    /// The number register, full width.
    public var rawNumber: UInt64
    /// The first argument register (an event's own argument).
    public var arg1: UInt64
    /// The second argument register (an event's own argument).
    public var arg2: UInt64
    /// The region address for hypercalls that run conversations.
    public var arg3: UInt64
    /// 0 on a conversation's first trap, then the guest's response code.
    public var arg4: UInt64
    /// The vCPU that trapped.
    public var vcpu: Int

    /// Makes the registers of one trap, as a front end read them.
    /// - Parameters:
    ///   - number: The number register, full width.
    ///   - arg1: The first argument register.
    ///   - arg2: The second argument register.
    ///   - arg3: The region address.
    ///   - arg4: 0, or the guest's response code.
    ///   - vcpu: The vCPU that trapped.
    package init(number: UInt64, arg1: UInt64 = 0, arg2: UInt64 = 0, arg3: UInt64 = 0,
                arg4: UInt64 = 0, vcpu: Int = 0) {
        self.rawNumber = number
        self.arg1 = arg1
        self.arg2 = arg2
        self.arg3 = arg3
        self.arg4 = arg4
        self.vcpu = vcpu
    }

    /// The hypercall number: the number register's low 32 bits.
    public var number: HypercallNumber { HypercallNumber(register: rawNumber) }
}

/// Work a conversation runs as a step function: the engine asks for its
/// first step, then hands it each response; the work never touches guest
/// memory itself. What a Swift `async` handler (``GuestHandler``) is built
/// on, for work that needs the last nanoseconds of a round trip.
public protocol ConversationWork: AnyObject {
    /// The conversation's first step, on its first trap.
    /// - Parameter conversation: The conversation starting.
    /// - Returns: The first command, or the result at once.
    func start(_ conversation: Conversation) -> WorkStep
    /// The next step, given the guest's response to the last command.
    /// - Parameters:
    ///   - conversation: The conversation continuing.
    ///   - response: The response; its payload is valid during this call only.
    /// - Returns: The next command, the result, or a failure.
    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep
    /// The conversation ended before the work did (the guest abandoned it,
    /// answered nonsense, or the plugin is unloading): let go of everything.
    /// - Parameters:
    ///   - conversation: The conversation that ended.
    ///   - reason: Why it ended.
    func cancel(_ conversation: Conversation, because reason: PortalError)
}

/// One conversation between a piece of work and the guest, identified by the
/// guest page it uses. Only the vCPU that holds its claim (`ticket`) touches it.
public final class Conversation: @unchecked Sendable {
    /// The hypercall that started it (its vCPU may differ from later traps').
    public let call: Hypercall
    /// The guest address of the conversation's region (its key).
    public let regionAddress: UInt64
    /// The engine outlives its conversations (shutdown ends them all), so
    /// this reference needs no reference counting on the round-trip path.
    package unowned(unsafe) let engine: PortalEngine
    /// Set for PORTAL_INTERRUPT conversations: the window's install budget.
    package let window: InterruptWindow?

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

    /// Who may touch this conversation once it waits: its ticket's claim
    /// (exactly one trapping vCPU at a time), for this generation of the
    /// ticket. Set under the table's lock when it starts waiting; nil
    /// before (nobody else can reach it then) and after.
    /// Unretained: tickets live as long as the engine, and a round trip
    /// then pays no reference counting for it.
    var ticket: Unmanaged<WaitingTicket>?
    var generation: UInt64 = 0

    /// The trapping vCPU's own view of guest virtual memory, set by the
    /// engine only while the work runs inside a trap (`start`, `resume`)
    /// and nil otherwise: the emulator's accessor is valid only on that
    /// vCPU's thread during its callback. nil as well when the front end
    /// offers no such view or `direct_memory=off`. `Guest`'s memory
    /// operations try it before a portal round trip.
    var directMemory: GuestMemory?

    init(call: Hypercall, engine: PortalEngine, window: InterruptWindow?, work: any ConversationWork) {
        self.call = call
        self.regionAddress = call.arg3
        self.engine = engine
        self.window = window
        self.work = work
    }

    /// Where it started, as log lines name it.
    package var site: TrapSite {
        TrapSite(number: call.number, vcpu: call.vcpu, regionAddress: regionAddress)
    }

    /// The guest's word width and byte order.
    public var layout: GuestLayout { engine.layout }
    /// The guest module's op table.
    public var ops: OpTable { engine.configuration.ops }
    /// Payload bytes one command or response can carry, as registered by the guest.
    public var regionSize: Int { engine.regionSize }

    /// Takes installs from this interrupt window's budget. Work that gets
    /// fewer than it wanted should do what it can and queue itself again.
    /// - Parameter wanted: How many installs the work would like.
    /// - Returns: How many it may make: at most `wanted`; always 0 outside
    ///   an interrupt conversation.
    public func takeInstallBudget(_ wanted: Int) -> Int {
        window?.take(wanted) ?? 0
    }
}

/// The claim of a waiting conversation, in memory the engine never frees
/// while it lives: tickets are pooled by the waiting table and handed to
/// one conversation after another, each time with a new generation.
///
/// This is what lets each vCPU remember the conversations it served
/// without keeping them alive: its cache holds (ticket, generation) pairs,
/// and claiming a conversation through a remembered pair is one
/// compare-and-swap that fails once that generation is over. A conversation
/// is referenced only by the waiting table and the trap serving it, so the
/// memory held is bounded by `max_conversations`, not by the caches.
final class WaitingTicket: @unchecked Sendable {
    /// `generation << 2 | claim`.
    let state = Atomic<UInt64>(0)
    /// The conversation of the current generation: read only by whoever
    /// holds its claim, set and cleared under the table's lock.
    var conversation: Conversation?

    enum Claim {
        static let idle: UInt64 = 0
        static let busy: UInt64 = 1
        static let ended: UInt64 = 2
    }

    @inline(__always)
    static func state(_ generation: UInt64, _ claim: UInt64) -> UInt64 { generation << 2 | claim }

    /// Takes the claim of `generation` from idle to `desired`; the state
    /// found when it was not idle.
    @inline(__always)
    func claim(_ generation: UInt64, as desired: UInt64) -> (claimed: Bool, found: UInt64) {
        let (exchanged, original) = state.compareExchange(
            expected: Self.state(generation, Claim.idle), desired: Self.state(generation, desired),
            ordering: .acquiring)
        return (exchanged, original)
    }

    /// Lets go of the claim of `generation` (the holder does this).
    @inline(__always)
    func release(_ generation: UInt64, as claim: UInt64) {
        state.store(Self.state(generation, claim), ordering: .releasing)
    }
}
