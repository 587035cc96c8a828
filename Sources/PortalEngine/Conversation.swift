import Synchronization

/// One conversation between a piece of work and the guest, identified by the
/// guest page it uses. Only the vCPU that holds its claim (`ticket`) touches it.
public final class Conversation: @unchecked Sendable {
    /// The hypercall that started it (its vCPU may differ from later traps').
    public let call: Hypercall
    /// The guest address of the conversation's region (its key).
    public let regionAddress: UInt64
    /// What the conversation uses of the engine that runs it.
    let context: ConversationContext
    /// Set for PORTAL_INTERRUPT conversations: the window's install budget.
    package let window: InterruptWindow?

    /// Its lifecycle; events come only from whoever holds its claim.
    var machine = ConversationStateMachine()
    let work: any ConversationWork

    /// The engine's count of conversations that had started waiting when
    /// this one last heard from the guest (see `stale_after`).
    let lastHeard = Atomic<UInt64>(0)
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

    init(call: Hypercall, context: ConversationContext, window: InterruptWindow?, work: any ConversationWork) {
        self.call = call
        self.regionAddress = call.arg3
        self.context = context
        self.window = window
        self.work = work
    }

    /// Where it started, as log lines name it.
    package var site: TrapSite {
        TrapSite(number: call.number, vcpu: call.vcpu, regionAddress: regionAddress)
    }

    /// The guest's word width and byte order.
    public var layout: GuestLayout { context.layout }
    /// The guest module's op table.
    public var ops: OpTable { context.ops }
    /// Payload bytes one command or response can carry, as registered by the guest.
    public var regionSize: Int { context.regionSize }

    /// Takes installs from this interrupt window's budget. Work that gets
    /// fewer than it wanted should do what it can and queue itself again.
    /// - Parameter wanted: How many installs the work would like.
    /// - Returns: How many it may make: at most `wanted`; always 0 outside
    ///   an interrupt conversation.
    public func takeInstallBudget(_ wanted: Int) -> Int {
        window?.take(wanted) ?? 0
    }
}

/// What a conversation, and the work it runs, may use of the engine: the
/// guest's layout, op table and region size, the logger, and queueing an
/// interrupt. Work reaches nothing else of the engine (not its tables, not
/// `hypercall`), so user code holding a `Guest` cannot drive the engine
/// from inside a conversation.
///
/// The engine outlives its conversations (shutdown ends them all), so the
/// reference needs no reference counting on the round-trip path.
struct ConversationContext: @unchecked Sendable {
    private unowned(unsafe) let engine: PortalEngine

    init(engine: PortalEngine) { self.engine = engine }

    var layout: GuestLayout { engine.layout }
    var ops: OpTable { engine.configuration.ops }
    /// Payload bytes per region: the guest's registration, else `region_size=`.
    var regionSize: Int { engine.regionSize }
    var logger: PortalLogger { engine.logger }

    /// Queues interrupt `name` (see `PortalEngine.queueInterrupt`).
    /// - Throws: what `PortalEngine.queueInterrupt` throws.
    func queueInterrupt(_ name: String) throws(PortalError) { try engine.queueInterrupt(name) }

    /// Logs a line the guest caused, rate-limited (see `PortalEngine.guestLog`).
    func guestLog(_ level: LogLevel, _ kind: String, _ number: HypercallNumber,
                  _ message: @autoclosure () -> String) {
        engine.guestLog(level, kind, number, message())
    }
}

