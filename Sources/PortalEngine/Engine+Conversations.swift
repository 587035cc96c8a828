/// Running conversations: a trap starts or continues one, the guest's answer
/// is read, the work's step is carried out. Every protocol decision is the
/// conversation's `ConversationStateMachine`'s; this file performs its actions.
extension PortalEngine {
    /// Serves a trap of a conversation hypercall on `region`. `direct` is
    /// the trapping vCPU's own view of guest virtual memory, valid during
    /// this trap only (nil when the front end offers none or
    /// `direct_memory=off`); the work sees it while it runs.
    func serveConversation(_ call: Hypercall, number: HypercallNumber, region: UInt64,
                           vcpu: VCPU, memory: GuestMemory, direct: GuestMemory?) -> HypercallOutcome {
        // A conversation waiting on this region continues, whatever its number.
        switch waiting.claim(region, vcpu: vcpu) {
        case .claimed(let conversation):
            return continueConversation(conversation, call: call, number: number, region: region, vcpu: vcpu,
                                        memory: memory, direct: direct)
        case .busy:
            guestLog(.error, TrapSite(number: number, vcpu: vcpu.index, regionAddress: region), .busyOnAnotherVCPU)
            return .handled
        case .none:
            return startConversation(call, number: number, region: region, vcpu: vcpu, memory: memory,
                                     direct: direct)
        }
    }

    /// A trap on a region nothing waits on: starts the work attached to
    /// `number` (or the pending interrupts), or ends a guest loop nothing
    /// serves any more.
    private func startConversation(_ call: Hypercall, number: HypercallNumber, region: UInt64,
                                   vcpu: VCPU, memory: GuestMemory, direct: GuestMemory?) -> HypercallOutcome {
        let isInterrupt = number == .portalInterrupt
        let attached = isInterrupt ? nil : handlers.lookup(number.rawValue, reader: vcpu.handlerReader)
        if !isInterrupt && attached == nil { return .notMine }

        switch ConversationStateMachine.trapWithoutConversation(answer: call.arg4) {
        case .start:
            break
        case .endGuestLoop(let error):
            // Before any interrupt is taken, so none is lost with the loop.
            let site = TrapSite(number: number, vcpu: vcpu.index, regionAddress: region)
            guestLog(.warn, site, error)
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
        let conversation = Conversation(call: call, context: ConversationContext(engine: self), window: window,
                                        work: work)
        // The direct view is valid during this trap only (none is set on the
        // round trip of a front end that offers none).
        if direct != nil { conversation.directMemory = direct }
        let started = conversation.work.start(conversation)
        if direct != nil { conversation.directMemory = nil }
        return step(conversation, started, vcpu: vcpu, memory: memory)
    }

    /// Hands the guest's answer (arg4) to a waiting conversation whose claim
    /// this trap holds.
    private func continueConversation(_ conversation: Conversation, call: Hypercall, number: HypercallNumber,
                                      region: UInt64, vcpu: VCPU, memory: GuestMemory,
                                      direct: GuestMemory?) -> HypercallOutcome {
        let regionSize = self.regionSize
        switch conversation.machine.guestAnswered(call.arg4) {
        case .readHeader:
            let scratch = vcpu.scratch(payloadSize: regionSize)
            guard memory.read(conversation.regionAddress,
                              into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<RegionHeader.size]))
            else {
                return perform(conversation.machine.answerUnreadable(bytes: RegionHeader.size), conversation,
                               vcpu: vcpu, memory: memory)
            }
            let header = RegionHeader(decoding: scratch.baseAddress!, layout: layout)
            return resume(conversation, conversation.machine.answerRead(header, regionSize: regionSize),
                          PortalResponse(code: .readNumber, address: header.address, size: header.size),
                          vcpu: vcpu, memory: memory, direct: direct)
        case .readAnswer(let code, let payloadHint):
            // One guest access for the header and the payload the command
            // can produce; a second one only if the guest sent more.
            let scratch = vcpu.scratch(payloadSize: regionSize)
            let firstRead = RegionHeader.size + min(payloadHint, regionSize)
            guard memory.read(conversation.regionAddress,
                              into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<firstRead])) else {
                return perform(conversation.machine.answerUnreadable(bytes: firstRead), conversation,
                               vcpu: vcpu, memory: memory)
            }
            let header = RegionHeader(decoding: scratch.baseAddress!, layout: layout)
            // The rest of a long answer, if it fits the region (whether a
            // larger one is an error is the machine's to say).
            let answerEnd = RegionHeader.size + Int(min(header.size, UInt64(regionSize)))
            if answerEnd > firstRead {
                guard memory.read(conversation.regionAddress &+ UInt64(firstRead),
                                  into: UnsafeMutableRawBufferPointer(rebasing: scratch[firstRead..<answerEnd]))
                else {
                    return perform(conversation.machine.answerUnreadable(bytes: answerEnd), conversation,
                                   vcpu: vcpu, memory: memory)
                }
            }
            return resume(conversation, conversation.machine.answerRead(header, regionSize: regionSize),
                          PortalResponse(code: code, address: header.address, size: header.size,
                                         payload: UnsafeRawBufferPointer(rebasing: scratch[RegionHeader.size..<answerEnd])),
                          vcpu: vcpu, memory: memory, direct: direct)
        case .resume(let code):
            return resume(conversation, PortalResponse(code: code), vcpu: vcpu, memory: memory, direct: direct)
        case .restart(let ending):
            // The guest gave this conversation up and starts a new one here.
            end(conversation, ending, vcpu: vcpu, memory: memory)
            return startConversation(call, number: number, region: region, vcpu: vcpu, memory: memory,
                                     direct: direct)
        case let action:
            return perform(action, conversation, vcpu: vcpu, memory: memory)
        }
    }

    /// Hands `response` to the work when the machine says `.resume`.
    @inline(__always)
    private func resume(_ conversation: Conversation, _ action: ConversationStateMachine.Action,
                        _ response: PortalResponse, vcpu: VCPU, memory: GuestMemory,
                        direct: GuestMemory?) -> HypercallOutcome {
        guard case .resume = action else { return perform(action, conversation, vcpu: vcpu, memory: memory) }
        return resume(conversation, response, vcpu: vcpu, memory: memory, direct: direct)
    }

    /// Hands `response` to the work, with the trap's direct view set while
    /// it runs, and carries out its step.
    @inline(__always)
    private func resume(_ conversation: Conversation, _ response: PortalResponse, vcpu: VCPU,
                        memory: GuestMemory, direct: GuestMemory?) -> HypercallOutcome {
        if direct != nil { conversation.directMemory = direct }
        let resumed = conversation.work.resume(conversation, with: response)
        if direct != nil { conversation.directMemory = nil }
        return step(conversation, resumed, vcpu: vcpu, memory: memory)
    }

    /// Carries out what the work decided.
    private func step(_ conversation: Conversation, _ workStep: consuming WorkStep, vcpu: VCPU,
                      memory: GuestMemory) -> HypercallOutcome {
        let regionSize = self.regionSize
        switch consume workStep {
        case .command(let command):
            var action = conversation.machine.commandSent(op: command.op, size: command.size, ops: opNumbers,
                                                          regionSize: regionSize)
            if case .admit = action { action = admit(conversation) }
            guard case .writeCommand = action else { return perform(action, conversation, vcpu: vcpu, memory: memory) }
            waiting.heard(conversation)
            let scratch = vcpu.scratch(payloadSize: regionSize)
            let count = command.encode(into: scratch, payloadSize: regionSize, layout: layout)
            guard memory.write(conversation.regionAddress,
                               from: UnsafeRawBufferPointer(rebasing: scratch[..<count])) else {
                return perform(conversation.machine.commandUnwritable(bytes: count), conversation, vcpu: vcpu,
                               memory: memory)
            }
            // A waiting conversation has its ticket (`WaitingTable.insert`).
            let ticket = conversation.ticket.unsafelyUnwrapped
            vcpu.remember(conversation.regionAddress, ticket, conversation.generation)
            ticket._withUnsafeGuaranteedRef { $0.release(conversation.generation, as: WaitingTicket.Claim.idle) }
            return .handled
        case .finished(let value):
            let action = conversation.machine.workFinished()
            let outcome = perform(action, conversation, vcpu: vcpu, memory: memory)
            guard case .end = action else { return outcome }
            return .returning(value)
        case .failed(let error):
            return perform(conversation.machine.workFailed(error), conversation, vcpu: vcpu, memory: memory)
        }
    }

    /// Enters a conversation's first command in the waiting table; what the
    /// machine says to that. Off the round trip's path: once per conversation.
    @inline(never)
    private func admit(_ conversation: Conversation) -> ConversationStateMachine.Action {
        let (refusal, reclaimed) = waiting.admit(conversation)
        // Nothing is written to their regions: the guest may have given the
        // pages to someone else.
        for (stale, action) in reclaimed { endReclaimed(stale, action) }
        return refusal.map { conversation.machine.admissionRefused($0) } ?? conversation.machine.admitted()
    }

    /// Carries out an action that ends `conversation` (`end`, `refuse`);
    /// the others are carried out where they are returned.
    /// - Returns: `.handled`: the return register is left alone.
    @discardableResult
    func perform(_ action: ConversationStateMachine.Action, _ conversation: Conversation, vcpu: VCPU,
                 memory: GuestMemory) -> HypercallOutcome {
        switch action {
        case .end(let ending), .restart(let ending), .refuse(let ending):
            end(conversation, ending, vcpu: vcpu, memory: memory)
        case .admit, .writeCommand, .readAnswer, .readHeader, .resume:
            break
        }
        return .handled
    }

    /// Carries out the ending of a conversation ended from outside (reclaimed,
    /// unload): it left the table already, and nothing is written.
    func endReclaimed(_ conversation: Conversation, _ action: ConversationStateMachine.Action) {
        switch action {
        case .end(let ending), .refuse(let ending): reportEnd(conversation, ending, site: conversation.site)
        default: break
        }
    }

    /// Ends a conversation as its machine said: NONE into the region so the
    /// guest leaves its loop, out of the table, a log line and the work
    /// cancelled for a failure.
    func end(_ conversation: Conversation, _ ending: ConversationStateMachine.Ending, vcpu: VCPU,
             memory: GuestMemory) {
        let site = TrapSite(number: conversation.call.number, vcpu: vcpu.index,
                            regionAddress: conversation.regionAddress)
        if ending.writesNone { writeNone(conversation.regionAddress, vcpu: vcpu, memory: memory, site: site) }
        // Only a conversation that waited is in the table: one that finishes
        // on its first trap takes no lock.
        if ending.leavesTable { waiting.leave(conversation) }
        reportEnd(conversation, ending, site: site)
    }

    /// The log line and the work's cancellation of an ending.
    func reportEnd(_ conversation: Conversation, _ ending: ConversationStateMachine.Ending, site: TrapSite) {
        guard let failure = conversation.machine.failure else { return }
        guestLog(ending.level, site, failure)
        if ending.cancelsWork { conversation.work.cancel(conversation, because: failure) }
    }

    /// Writes NONE (op 0) into `region`, which ends the guest's loop.
    func writeNone(_ region: UInt64, vcpu: VCPU, memory: GuestMemory, site: TrapSite) {
        let scratch = vcpu.scratch(payloadSize: regionSize)
        RegionHeader(op: 0, pid: currentProcessID, address: 0, size: 0).encode(to: scratch.baseAddress!,
                                                                               layout: layout)
        if !memory.write(region, from: UnsafeRawBufferPointer(rebasing: scratch[..<RegionHeader.size])) {
            guestLog(.error, "NONE unwritable", site.number,
                     "\(site): could not write NONE to end the guest's loop: \(PortalError.regionUnwritable(bytes: RegionHeader.size))")
        }
    }
}
