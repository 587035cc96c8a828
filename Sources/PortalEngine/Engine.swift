import Synchronization

/// The portal engine: serves the protocol's own hypercalls, runs the work
/// attached to other hypercall numbers as conversations keyed by region
/// address, and runs queued interrupt work in PORTAL_INTERRUPT conversations.
///
/// Any number of vCPU threads may call `hypercall` at once. Shared state:
/// the handler table (an immutable snapshot read without a lock), the table
/// of waiting conversations (a mutex, skipped when a vCPU continues its own
/// last conversation), the interrupt queue (a mutex, with a lock-free
/// "anything pending?" count), and atomics for the region size and the flag.
public final class PortalEngine: @unchecked Sendable {
    /// The plugin's arguments.
    package let configuration: PortalConfiguration
    /// The guest's word width and byte order.
    public let layout: GuestLayout
    /// Where the plugin's log lines go: analysis code logs through it too.
    public let logger: PortalLogger
    /// Sees conversations and round trips (trace, statistics): the work of
    /// each new conversation is wrapped in a `RecordedWork`, so the round
    /// trip itself has no hook and costs the same with or without one.
    package let recorder: (any PortalRecorder)?

    /// Payload bytes per region the guest registered (`region_size=` until it does).
    let registeredRegionSize: Atomic<Int>
    /// The op numbers the state machine checks commands against.
    let opNumbers: OpNumbers
    /// Guest address of the interrupt flag; 0 until the guest gives it.
    let flagAddress = Atomic<UInt64>(0)
    /// The work attached to each hypercall number.
    let handlers = HandlerRegistry()
    /// Interrupt handlers by name, and those queued for the next window.
    let interrupts: InterruptQueue
    /// The conversations waiting for the guest (Engine+Conversations.swift).
    let waiting: WaitingConversations

    /// Rate limit of the lines a guest can cause (`guestLog`).
    let logLimiter: LogLimiter

    /// Makes an engine for one guest.
    /// - Parameters:
    ///   - configuration: the plugin's arguments.
    ///   - layout: the guest's word width and byte order.
    ///   - logger: where log lines go.
    ///   - logClock: monotonic nanoseconds for the rate limit of lines the
    ///     guest causes; nil for CLOCK_MONOTONIC (tests pass their own).
    ///   - recorder: receives every conversation's start, round trips and end
    ///     (statistics, trace); nil records nothing and costs nothing.
    package init(configuration: PortalConfiguration, layout: GuestLayout, logger: PortalLogger,
                 recorder: (any PortalRecorder)? = nil, logClock: (@Sendable () -> UInt64)? = nil) {
        self.configuration = configuration
        self.layout = layout
        self.logger = logger
        self.recorder = recorder
        self.logLimiter = LogLimiter(clock: logClock ?? LogLimiter.monotonicNanoseconds)
        self.registeredRegionSize = Atomic(configuration.regionSize)
        self.opNumbers = OpNumbers(configuration.ops)
        self.interrupts = InterruptQueue(limit: configuration.maxInterrupts)
        self.waiting = WaitingConversations(limit: configuration.maxConversations,
                                            staleAfter: configuration.staleAfter)
    }

    /// Payload bytes per region: the guest's registration, else `region_size=`.
    public var regionSize: Int { registeredRegionSize.load(ordering: .relaxed) }

    /// The guest module's op table (`ops=`, else the current module's):
    /// resolve op names with it once, before conversations run.
    public var ops: OpTable { configuration.ops }

    /// Conversations waiting for the guest's next trap.
    package var liveConversations: Int { waiting.count }

    /// The state of vCPU `index`, made once per vCPU before its first trap
    /// (it registers as a reader of the handler table).
    /// - Parameter index: the vCPU's number.
    /// - Returns: the state to pass to every `hypercall` of that vCPU.
    package func makeVCPU(index: Int) -> VCPU {
        let vcpu = VCPU(index: index)
        handlers.register(vcpu.handlerReader)
        return vcpu
    }

    // MARK: Analysis API

    /// Runs work for every conversation hypercall `number` starts, replacing
    /// earlier work on that number.
    ///
    /// Each attach or detach rebuilds the handler table (O(numbers attached))
    /// so that vCPUs look numbers up in O(1) without a lock; the table it
    /// replaces is freed once no vCPU reads it.
    /// - Parameters:
    ///   - number: The hypercall to serve: any number but the protocol's own.
    ///   - factory: Makes the work of each conversation (a step function,
    ///     ``ConversationWork``).
    /// - Throws: ``PortalError`` with code ``PortalError/Code/reservedHypercall``
    ///   when the portal protocol uses `number` itself.
    public func attach(_ number: HypercallNumber, _ factory: WorkFactory) throws(PortalError) {
        guard !number.isReservedByProtocol else {
            throw PortalError(.reservedHypercall,
                              "cannot attach work to hypercall \(number): the portal protocol uses it")
        }
        handlers.set(number.rawValue, factory)
    }

    /// Runs a Swift handler for every conversation hypercall `number` starts,
    /// replacing earlier work on that number.
    /// - Parameters:
    ///   - number: The hypercall to serve: any number but the protocol's own.
    ///   - body: The handler: it runs on the trapping vCPU's thread, awaits
    ///     guest operations one at a time, and its return value becomes the
    ///     hypercall's result.
    /// - Throws: ``PortalError`` with code ``PortalError/Code/reservedHypercall``
    ///   when the portal protocol uses `number` itself.
    public func attach(_ number: HypercallNumber, _ body: @escaping GuestHandler) throws(PortalError) {
        try attach(number, .async(body))
    }

    /// Stops serving hypercall `number`; conversations it started already run on.
    /// - Parameter number: The hypercall whose work goes.
    /// - Returns: Whether work was attached to it.
    @discardableResult
    public func detach(_ number: HypercallNumber) -> Bool { handlers.remove(number.rawValue) }

    /// Runs `observer` first in every conversation hypercall `number` starts,
    /// before the work attached to the number, in the same conversation:
    /// watching a hypercall without taking it from whoever serves it.
    ///
    /// Attaching and detaching work leaves observers in place. Several
    /// observers of one number run in the order they were added; an
    /// observer's result is dropped, and one that fails is logged (warn) and
    /// the conversation goes on with the next. With observers but no work
    /// attached, the hypercall is the plugin's and returns 0.
    /// - Parameters:
    ///   - number: The hypercall to watch: any number but the protocol's own.
    ///   - name: Names the observer: observing again under the same name
    ///     replaces it, and ``stopObserving(_:as:)`` removes it.
    ///   - observer: Makes the observer's work for each conversation.
    /// - Throws: ``PortalError`` with code ``PortalError/Code/reservedHypercall``
    ///   when the portal protocol uses `number` itself.
    public func observe(_ number: HypercallNumber, as name: String, _ observer: WorkFactory) throws(PortalError) {
        guard !number.isReservedByProtocol else {
            throw PortalError(.reservedHypercall,
                              "cannot observe hypercall \(number): the portal protocol uses it")
        }
        handlers.observe(number.rawValue, as: name, observer)
    }

    /// Runs a Swift handler first in every conversation hypercall `number`
    /// starts, before the work attached to the number (as the
    /// `WorkFactory` overload does); its return value is dropped.
    /// - Parameters:
    ///   - number: The hypercall to watch: any number but the protocol's own.
    ///   - name: Names the observer (observing again under it replaces it).
    ///   - body: The observer: it runs as a handler does, on the trapping vCPU's thread.
    /// - Throws: ``PortalError`` with code ``PortalError/Code/reservedHypercall``
    ///   when the portal protocol uses `number` itself.
    public func observe(_ number: HypercallNumber, as name: String,
                        _ body: @escaping GuestHandler) throws(PortalError) {
        try observe(number, as: name, .async(body))
    }

    /// Stops observer `name` of hypercall `number`; conversations it is in already run on.
    /// - Parameters:
    ///   - number: The hypercall watched.
    ///   - name: The observer's name.
    /// - Returns: Whether there was such an observer.
    @discardableResult
    public func stopObserving(_ number: HypercallNumber, as name: String) -> Bool {
        handlers.stopObserving(number.rawValue, as: name)
    }

    /// Handler tables in memory: the current one, plus any replaced while a
    /// vCPU was looking a number up (freed at the next attach or detach).
    var handlerTablesAlive: Int { handlers.tablesAlive }

    /// Registers interrupt work under `name`; a later registration of the
    /// name replaces it.
    /// - Parameters:
    ///   - name: The name ``queueInterrupt(_:)`` queues it by.
    ///   - factory: Makes the work each time the interrupt runs.
    public func registerInterrupt(_ name: String, _ factory: WorkFactory) {
        interrupts.register(name, factory)
    }

    /// Registers a Swift interrupt handler under `name`; a later registration
    /// of the name replaces it.
    /// - Parameters:
    ///   - name: The name ``queueInterrupt(_:)`` queues it by.
    ///   - body: The handler: it runs in the guest's next PORTAL_INTERRUPT
    ///     conversation after each queueing, with the window's install budget.
    public func registerInterrupt(_ name: String, _ body: @escaping InterruptHandler) {
        registerInterrupt(name, .async { guest in
            try await body(guest)
            return 0
        })
    }

    /// Removes the interrupt handler of `name`; a queued run of it is skipped.
    /// - Parameter name: The handler's name.
    public func unregisterInterrupt(_ name: String) { interrupts.unregister(name) }

    /// Queues interrupt `name` for the guest's next PORTAL_INTERRUPT
    /// conversation; queueing one already pending does nothing (it runs once).
    ///
    /// The flag itself is raised at the next trap of any vCPU (guest memory
    /// can only be written from a vCPU), and on every trap after it until
    /// the guest runs the interrupt conversation. A front end that hears of a
    /// vCPU waking from idle raises it then too, with
    /// ``announcePendingInterrupts(memory:)``. Any thread may call this.
    /// - Parameter name: The name a handler was registered with.
    /// - Throws: ``PortalError`` with code ``PortalError/Code/noInterruptHandler``
    ///   when no handler has that name, ``PortalError/Code/interruptLimit``
    ///   when `max_interrupts` are pending already.
    public func queueInterrupt(_ name: String) throws(PortalError) {
        switch interrupts.queue(name) {
        case .queued, .alreadyPending:
            return
        case .noHandler:
            throw PortalError(.noInterruptHandler, "cannot queue interrupt '\(name)': no handler has that name")
        case .full:
            throw PortalError(.interruptLimit,
                              "cannot queue interrupt '\(name)': \(configuration.maxInterrupts) interrupts are pending already (max_interrupts)")
        }
    }

    /// The interrupts queued for the guest's next interrupt conversation,
    /// in the order they run.
    package var pendingInterrupts: [String] { interrupts.pendingNames }

    // MARK: Hypercalls

    /// Whether hypercall `number` is the engine's business: one of the
    /// protocol's own or one with work attached. Front ends that pay for
    /// every register they read (QEMU) ask this after reading only the number.
    /// - Parameters:
    ///   - rawNumber: the number register, full width.
    ///   - vcpu: the trapping vCPU (it reads the handler table).
    /// - Returns: whether `hypercall` would serve it.
    @inline(__always)
    package func serves(_ rawNumber: UInt64, vcpu: VCPU) -> Bool {
        let number = HypercallNumber(register: rawNumber)
        return number.isReservedByProtocol || handlers.contains(number.rawValue, reader: vcpu.handlerReader)
    }

    /// Whether serving this hypercall needs arg1 and arg2: only a
    /// registration or a conversation's first trap (answer 0) uses them; a
    /// continuing conversation needs just the region (arg3) and the answer
    /// (arg4). Front ends may pass 0 for arg1 and arg2 otherwise.
    @inline(__always)
    package static func needsArguments(number rawNumber: UInt64, answer: UInt64) -> Bool {
        let number = HypercallNumber(register: rawNumber)
        return UInt32(truncatingIfNeeded: answer) == 0 || number == .registerMemRegion
            || number == .enablePortalInterrupt
    }

    /// Serves one trapped hypercall on `vcpu`'s thread.
    /// - Parameters:
    ///   - call: the registers the front end read.
    ///   - vcpu: the trapping vCPU's state.
    ///   - memory: guest memory as the trapping vCPU sees it (the region,
    ///     the interrupt flag).
    ///   - directMemory: the emulator's own view of the trapping task's
    ///     virtual memory, valid during this call, that Swift handlers'
    ///     memory operations may use instead of a portal READ or WRITE;
    ///     nil when the emulator offers none. Ignored with `direct_memory=off`.
    /// - Returns: what the emulator does with the hypercall.
    package func hypercall(_ call: Hypercall, vcpu: VCPU, memory: GuestMemory,
                           directMemory: GuestMemory? = nil) -> HypercallOutcome {
        let number = call.number
        switch number {
        case .registerMemRegion:
            registerRegion(call)
            return .handled
        case .enablePortalInterrupt:
            enableInterrupts(call, memory: memory)
            return .handled
        default:
            break
        }
        let region = call.arg3 & layout.addressMask
        let outcome = serveConversation(call, number: number, region: region, vcpu: vcpu, memory: memory,
                                        direct: configuration.directMemory ? directMemory : nil)
        // The command is written: a scratch buffer replaced during this trap
        // can go (the answer the work read may have lain in it).
        vcpu.endTrap()
        // Interrupt work queued before or during this trap is announced now,
        // and again at every trap until the guest runs the interrupt conversation.
        if interrupts.hasPending { setFlag(1, memory: memory) }
        return outcome
    }

    // MARK: Unloading

    /// Ends every waiting conversation (each is logged, its work cancelled)
    /// and drops pending interrupts (logged). A conversation a running vCPU
    /// holds at that moment is left to that vCPU.
    package func shutdown() {
        // A vCPU still running (QEMU exits from one vCPU while others run)
        // may hold one: that vCPU finishes it, not this thread.
        // Logged and cancelled as any conversation ended from outside is
        // (rated per hypercall; what the limiter held back is counted below).
        for (conversation, action) in waiting.endAll(because: .unloaded) {
            endReclaimed(conversation, action)
        }
        for (key, count) in logLimiter.unreported() {
            logger.warn("hypercall \(HypercallNumber(rawValue: key.number)): \(count) more '\(key.kind)' lines were suppressed before unload (at most \(logLimiter.burst) a second for each kind and hypercall)")
        }
        let pending = interrupts.pendingNames
        if !pending.isEmpty {
            logger.warn("interrupts still pending at unload, dropped: \(pending.joined(separator: ", "))")
        }
        interrupts.removeAll()
    }
}
