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

    private let registeredRegionSize: Atomic<Int>
    private let opNumbers: OpNumbers
    /// Guest address of the interrupt flag; 0 until the guest gives it.
    private let flagAddress = Atomic<UInt64>(0)
    private let handlers = HandlerRegistry()
    private let interrupts: InterruptQueue
    private let waiting = Lock(WaitingTable())
    /// Conversations that have started waiting so far: the clock by which a
    /// conversation the guest never came back to is recognised as abandoned.
    private let waitStarts = Atomic<UInt64>(0)

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
    }

    /// Payload bytes per region: the guest's registration, else `region_size=`.
    public var regionSize: Int { registeredRegionSize.load(ordering: .relaxed) }

    /// The guest module's op table (`ops=`, else the current module's):
    /// resolve op names with it once, before conversations run.
    public var ops: OpTable { configuration.ops }

    /// Conversations waiting for the guest's next trap.
    package var liveConversations: Int { waiting.withLock { $0.count } }

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
        let site = TrapSite(number: number, vcpu: vcpu.index, regionAddress: region)

        let outcome = serve(call, number: number, region: region, site: site, vcpu: vcpu, memory: memory,
                            direct: configuration.directMemory ? directMemory : nil)
        // The command is written: a scratch buffer replaced during this trap
        // can go (the answer the work read may have lain in it).
        vcpu.endTrap()
        // Interrupt work queued before or during this trap is announced now,
        // and again at every trap until the guest runs the interrupt conversation.
        if interrupts.hasPending { setFlag(1, memory: memory) }
        return outcome
    }

    private func serve(_ call: Hypercall, number: HypercallNumber, region: UInt64,
                       site: TrapSite, vcpu: VCPU, memory: GuestMemory, direct: GuestMemory?) -> HypercallOutcome {
        // A conversation waiting on this region continues, whatever its number.
        switch claimWaiting(region, vcpu: vcpu) {
        case .claimed(let conversation):
            if let outcome = continueConversation(conversation, answer: call.arg4, vcpu: vcpu,
                                                  memory: memory, direct: direct) {
                return outcome
            }
        // arg4 = 0: the guest gave up on it and starts a new conversation here.
        case .busy:
            guestLog(.error, site, .busyOnAnotherVCPU)
            return .handled
        case .none:
            break
        }

        let isInterrupt = number == .portalInterrupt
        let attached = isInterrupt ? nil : handlers.lookup(number.rawValue, reader: vcpu.handlerReader)
        if !isInterrupt && attached == nil { return .notMine }

        let answer = UInt32(truncatingIfNeeded: call.arg4)
        if answer != 0 {
            // The guest is mid-loop, but nothing waits on this region (the
            // conversation was ended, or never started): end the guest's loop.
            // Before any interrupt is taken, so none is lost with the loop.
            guestLog(.warn, site, .strayAnswer(ResponseCode(rawValue: answer)))
            writeNone(region, vcpu: vcpu, memory: memory, site: site)
            return .handled
        }

        var call = call
        call.vcpu = vcpu.index
        call.arg3 = region
        var work: any ConversationWork
        var window: InterruptWindow? = nil
        if let attached {
            work = attached.make(call)
        } else {
            let pending = interrupts.takePending()
            setFlag(0, memory: memory)
            if pending.isEmpty { return .handled }
            window = InterruptWindow(installBudget: configuration.installBudget)
            work = InterruptWindowWork(handlers: pending)
        }
        if let recorder { work = RecordedWork(work, recorder: recorder) }
        let conversation = Conversation(call: call, engine: self, window: window, work: work)
        // The direct view is valid during this trap only (none is set on the
        // round trip of a front end that offers none).
        if direct != nil { conversation.directMemory = direct }
        let started = conversation.work.start(conversation)
        if direct != nil { conversation.directMemory = nil }
        return step(conversation, started, vcpu: vcpu, memory: memory, isNew: true)
    }

    /// Hands the guest's answer to a waiting conversation. nil when the
    /// guest abandoned it (arg4 = 0): the conversation is ended and a new one
    /// may start on the region.
    private func continueConversation(
        _ conversation: Conversation, answer: UInt64, vcpu: VCPU, memory: GuestMemory, direct: GuestMemory?
    ) -> HypercallOutcome? {
        let regionSize = self.regionSize
        let response: PortalResponse
        switch conversation.machine.guestAnswered(answer) {
        case .restart:
            finish(conversation, vcpu: vcpu, memory: memory, regionIsOurs: false, failure: .abandoned,
                   level: .warn)
            return nil
        case .fail(let error):
            return fail(conversation, error, vcpu: vcpu, memory: memory)
        case .deliver(let delivered):
            response = delivered
        case .readHeader(let code):
            let scratch = vcpu.scratch(payloadSize: regionSize)
            guard memory.read(conversation.regionAddress,
                              into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<RegionHeader.size]))
            else {
                return fail(conversation, .regionUnreadable(bytes: RegionHeader.size), vcpu: vcpu,
                            memory: memory)
            }
            let header = RegionHeader(decoding: scratch.baseAddress!, layout: layout)
            response = PortalResponse(code: code, address: header.address, size: header.size)
        case .readAnswer(let code, let payloadHint):
            // One guest access for the header and the payload the command
            // can produce; a second one only if the guest sent more.
            let scratch = vcpu.scratch(payloadSize: regionSize)
            let firstRead = RegionHeader.size + min(payloadHint, regionSize)
            guard memory.read(conversation.regionAddress,
                              into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<firstRead])) else {
                return fail(conversation, .regionUnreadable(bytes: firstRead), vcpu: vcpu, memory: memory)
            }
            let header = RegionHeader(decoding: scratch.baseAddress!, layout: layout)
            if let error = conversation.machine.answerRead(code, header: header, regionSize: regionSize) {
                return fail(conversation, error, vcpu: vcpu, memory: memory)
            }
            let answerEnd = RegionHeader.size + Int(header.size)
            if answerEnd > firstRead {
                guard memory.read(conversation.regionAddress &+ UInt64(firstRead),
                                  into: UnsafeMutableRawBufferPointer(rebasing: scratch[firstRead..<answerEnd]))
                else {
                    return fail(conversation, .regionUnreadable(bytes: answerEnd), vcpu: vcpu, memory: memory)
                }
            }
            response = PortalResponse(
                code: code, address: header.address, size: header.size,
                payload: UnsafeRawBufferPointer(rebasing: scratch[RegionHeader.size..<answerEnd]))
        }
        if direct != nil { conversation.directMemory = direct }
        let resumed = conversation.work.resume(conversation, with: response)
        if direct != nil { conversation.directMemory = nil }
        return step(conversation, resumed, vcpu: vcpu, memory: memory, isNew: false)
    }

    /// Carries out what the work decided.
    private func step(_ conversation: Conversation, _ workStep: consuming WorkStep, vcpu: VCPU,
                                           memory: GuestMemory, isNew: Bool) -> HypercallOutcome {
        let regionSize = self.regionSize
        switch consume workStep {
        case .command(let command):
            if let refusal = conversation.machine.commandSent(op: command.op, size: command.size, ops: opNumbers,
                                                              regionSize: regionSize) {
                return fail(conversation, refusal, vcpu: vcpu, memory: memory)
            }
            if isNew, let refusal = startWaiting(conversation) {
                return fail(conversation, refusal, vcpu: vcpu, memory: memory)
            }
            conversation.lastHeard.store(waitStarts.load(ordering: .relaxed), ordering: .relaxed)
            let scratch = vcpu.scratch(payloadSize: regionSize)
            let count = command.encode(into: scratch, payloadSize: regionSize, layout: layout)
            guard memory.write(conversation.regionAddress,
                               from: UnsafeRawBufferPointer(rebasing: scratch[..<count])) else {
                return fail(conversation, .regionUnwritable(bytes: count), vcpu: vcpu, memory: memory,
                            regionIsOurs: false)
            }
            // A waiting conversation has its ticket (`startWaiting`).
            let ticket = conversation.ticket.unsafelyUnwrapped
            vcpu.remember(conversation.regionAddress, ticket, conversation.generation)
            ticket._withUnsafeGuaranteedRef { $0.release(conversation.generation, as: WaitingTicket.Claim.idle) }
            return .handled
        case .finished(let value):
            conversation.machine.workFinished()
            finish(conversation, vcpu: vcpu, memory: memory, failure: nil, level: .debug)
            return .returning(value)
        case .failed(let error):
            return fail(conversation, conversation.machine.workFailed(error), vcpu: vcpu, memory: memory)
        }
    }

    private func fail(_ conversation: Conversation, _ error: PortalError, vcpu: VCPU,
                                           memory: GuestMemory, regionIsOurs: Bool = true) -> HypercallOutcome {
        finish(conversation, vcpu: vcpu, memory: memory, regionIsOurs: regionIsOurs, failure: error, level: .error)
        return .handled
    }

    /// Ends a conversation: NONE into the region so the guest leaves its
    /// loop, out of the table, the work released, and a log line for a failure.
    /// NONE is written only over a command of ours: a conversation that ends
    /// on its first trap finds the header the guest zeroed, and
    /// `regionIsOurs` is false when the guest took the page back (it
    /// restarted there) or the region cannot be written.
    private func finish(_ conversation: Conversation, vcpu: VCPU, memory: GuestMemory, regionIsOurs: Bool = true,
                                             failure: PortalError?, level: LogLevel) {
        conversation.machine.end()
        let site = TrapSite(number: conversation.call.number, vcpu: vcpu.index,
                            regionAddress: conversation.regionAddress)
        if conversation.isWaiting && regionIsOurs {
            writeNone(conversation.regionAddress, vcpu: vcpu, memory: memory, site: site)
        }
        // Only a conversation that waited is in the table: one that finishes
        // on its first trap takes no lock.
        if conversation.isWaiting { stopWaiting(conversation) }
        if let failure {
            guestLog(level, site, failure)
            conversation.work.cancel(conversation, because: failure)
        }
    }

    private func writeNone(_ region: UInt64, vcpu: VCPU, memory: GuestMemory, site: TrapSite) {
        let scratch = vcpu.scratch(payloadSize: regionSize)
        RegionHeader(op: 0, pid: currentProcessID, address: 0, size: 0).encode(to: scratch.baseAddress!,
                                                                               layout: layout)
        if !memory.write(region, from: UnsafeRawBufferPointer(rebasing: scratch[..<RegionHeader.size])) {
            guestLog(.error, "NONE unwritable", site.number,
                     "\(site): could not write NONE to end the guest's loop: \(PortalError.regionUnwritable(bytes: RegionHeader.size))")
        }
    }

    // MARK: Waiting conversations

    private enum ClaimResult {
        case claimed(Conversation)
        case busy
        case none
    }

    @inline(__always)
    private func claimWaiting(_ region: UInt64, vcpu: VCPU) -> ClaimResult {
        if let conversation = vcpu.claimRecent(region) { return .claimed(conversation) }
        guard let (found, ticket, generation) = waiting.withLock({ table -> (Conversation, WaitingTicket, UInt64)? in
            guard let found = table[region], let ticket = found.ticket?.takeUnretainedValue() else { return nil }
            return (found, ticket, found.generation)
        }) else { return .none }
        let (claimed, state) = ticket.claim(generation, as: WaitingTicket.Claim.busy)
        if claimed {
            vcpu.remember(region, Unmanaged.passUnretained(ticket), generation)
            return .claimed(found)
        }
        return state == WaitingTicket.state(generation, WaitingTicket.Claim.busy) ? .busy : .none
    }

    /// Enters a new conversation in the table; the reason if it may not wait.
    ///
    /// Abandoned conversations are reclaimed here, oldest first, in O(1)
    /// amortised per start (`WaitingTable`): any the guest has not come back
    /// to while `stale_after` others started waiting, and, when the table is
    /// full, the one it neglected longest, so that a guest that abandons
    /// conversations cannot lock well-behaved ones out. Only when every
    /// waiting conversation is being served by a vCPU at this moment is the
    /// new one refused.
    private func startWaiting(_ conversation: Conversation) -> PortalError? {
        let limit = configuration.maxConversations
        let staleAfter = UInt64(configuration.staleAfter)
        var reclaimed: [(Conversation, PortalError)] = []
        let refusal = waiting.withLock { table -> PortalError? in
            // Conversations leave the table before their claim ends, so one
            // still in it is live.
            if table[conversation.regionAddress] != nil { return .busyOnAnotherVCPU }
            let now = waitStarts.load(ordering: .relaxed) + 1
            waitStarts.store(now, ordering: .relaxed)
            // Entries a vCPU is serving right now are moved back; at most
            // one pass over the table is spent on them.
            var busySkipped = 0
            while busySkipped < table.count, let (oldest, heard) = table.leastRecentlyHeard() {
                let since = now - min(now, heard)
                let reason: PortalError
                if since > staleAfter {
                    reason = .neverCameBack(waitStarts: since)
                } else if table.count >= limit {
                    reason = .evictedForRoom(limit: limit, waitStarts: since)
                } else {
                    break
                }
                guard let ticket = oldest.ticket?.takeUnretainedValue(),
                      ticket.claim(oldest.generation, as: WaitingTicket.Claim.ended).claimed else {
                    table.moveToBack(oldest, stamp: now)
                    busySkipped += 1
                    continue
                }
                oldest.machine.end()
                oldest.isWaiting = false
                table.remove(oldest)
                reclaimed.append((oldest, reason))
            }
            guard table.count < limit else { return .conversationLimit(limit) }
            table.insert(conversation, stamp: now)
            conversation.isWaiting = true
            return nil
        }
        // Nothing is written to their regions: the guest may have given the
        // pages to someone else.
        for (stale, reason) in reclaimed {
            guestLog(.warn, stale.site, reason)
            stale.work.cancel(stale, because: reason)
        }
        return refusal
    }

    private func stopWaiting(_ conversation: Conversation) {
        waiting.withLock { table in
            table.remove(conversation)
            conversation.isWaiting = false
        }
    }

    // MARK: The protocol's own hypercalls

    private func registerRegion(_ call: Hypercall) {
        let requested = call.arg1 & layout.addressMask
        let site = "hypercall \(HypercallNumber.registerMemRegion) on vCPU \(call.vcpu)"
        guard requested >= 1, requested <= UInt64(PortalConfiguration.maxRegionSize) else {
            guestLog(.error, "region size refused", .registerMemRegion,
                     "\(site): region size \(requested) refused, expected 1 to \(PortalConfiguration.maxRegionSize) payload bytes; keeping \(regionSize)")
            return
        }
        registeredRegionSize.store(Int(requested), ordering: .relaxed)
        guestLog(.info, "region size", .registerMemRegion, "\(site): the guest's regions carry \(requested) payload bytes")
    }

    private func enableInterrupts(_ call: Hypercall, memory: GuestMemory) {
        let address = call.arg1 & layout.addressMask
        let site = "hypercall \(HypercallNumber.enablePortalInterrupt) on vCPU \(call.vcpu)"
        guard address != 0 else {
            guestLog(.error, "flag address refused", .enablePortalInterrupt,
                     "\(site): interrupt flag address 0 refused, expected the guest address of a u64")
            return
        }
        if call.arg2 != 0 {
            guestLog(.warn, "flag arg2", .enablePortalInterrupt,
                     "\(site): arg2 is \(hex(call.arg2)), expected 0; using the flag at \(hex(address))")
        }
        flagAddress.store(address, ordering: .relaxed)
        guestLog(.info, "flag address", .enablePortalInterrupt, "\(site): interrupt flag at \(hex(address))")
        // Work queued before the guest was ready is announced right away.
        if interrupts.hasPending { setFlag(1, memory: memory) }
    }

    /// Raises the interrupt flag if interrupt work is pending, outside any
    /// trap: a front end calls it when a vCPU runs again after waiting idle,
    /// on that vCPU's thread, so that an idle guest (one that makes no
    /// hypercalls) still learns of work queued from outside (the control
    /// socket). With nothing pending it costs one relaxed atomic load.
    /// - Parameter memory: guest memory of the calling vCPU.
    @inline(__always)
    package func announcePendingInterrupts(memory: GuestMemory) {
        if interrupts.hasPending { setFlag(1, memory: memory) }
    }

    /// Writes the interrupt flag in guest byte order. A failed write is
    /// harmless: the flag is written again at the next trap while work is pending.
    private func setFlag(_ value: UInt64, memory: GuestMemory) {
        let address = flagAddress.load(ordering: .relaxed)
        guard address != 0 else { return }
        withUnsafeTemporaryAllocation(byteCount: 8, alignment: 8) { bytes in
            layout.store(value, to: bytes.baseAddress!)
            if !memory.write(address, from: UnsafeRawBufferPointer(bytes)) {
                logger.debug("could not write \(value) to the interrupt flag at \(hex(address)); trying again at the next trap")
            }
        }
    }

    // MARK: Lines the guest causes

    /// Logs a line the guest caused, at most `LogLimiter.burst` per second
    /// per `kind` and hypercall `number`; what is suppressed is counted and
    /// reported with the next line of that kind after the second.
    func guestLog(_ level: LogLevel, _ kind: String, _ number: HypercallNumber,
                  _ message: @autoclosure () -> String) {
        guard level <= logger.level && level != .off else { return }
        switch logLimiter.admit(LogLimiter.Key(kind: kind, number: number.rawValue)) {
        case .print(let suppressedBefore):
            if suppressedBefore > 0 {
                logger.log(level, "hypercall \(number): \(suppressedBefore) more '\(kind)' lines were suppressed (at most \(logLimiter.burst) a second for each kind and hypercall)")
            }
            logger.log(level, message())
        case .suppressFirst:
            logger.log(level, "hypercall \(number): more than \(logLimiter.burst) '\(kind)' lines this second; further ones are counted, not printed")
        case .suppress:
            break
        }
    }

    /// `guestLog` for a conversation's failure.
    func guestLog(_ level: LogLevel, _ site: TrapSite, _ error: PortalError) {
        guestLog(level, error.kind, site.number, "\(site): \(error)")
    }

    // MARK: Unloading

    /// Ends every waiting conversation (each is logged, its work cancelled)
    /// and drops pending interrupts (logged). A conversation a running vCPU
    /// holds at that moment is left to that vCPU.
    package func shutdown() {
        // A vCPU still running (QEMU exits from one vCPU while others run)
        // may hold one: that vCPU finishes it, not this thread.
        let ended = waiting.withLock { table -> [Conversation] in
            table.all.filter { conversation in
                guard let ticket = conversation.ticket?.takeUnretainedValue(),
                      ticket.claim(conversation.generation, as: WaitingTicket.Claim.busy).claimed else { return false }
                conversation.machine.end()
                conversation.isWaiting = false
                table.remove(conversation)
                return true
            }
        }
        for conversation in ended {
            logger.warn("\(conversation.site): conversation still waiting for the guest at unload; ended")
            conversation.work.cancel(conversation, because: .unloaded)
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
