@testable import PortalEngine
import PortalTestSupport
import Synchronization
import Testing

@Suite("Interrupts")
struct InterruptTests {
    let flag: UInt64 = 0x7000

    @Test func queuedBeforeTheFlagIsRegisteredThenRaisedAndRunInQueueOrder() throws {
        let log = LogRecorder()
        let engine = makeEngine(layout: .big64, log: log)
        let (guest, vcpu) = bootedGuest(engine, layout: .big64)
        guest.map(0x8000, count: 4096)
        let order = Lock<[String]>([])
        for name in ["zeta", "alpha", "mid"] {
            engine.registerInterrupt(name) { g in
                order.withLock { $0.append(name) }
                try await g.write(UInt8(name.utf8.first!), at: 0x8000 + UInt64(order.withLock { $0.count }))
            }
        }
        try engine.queueInterrupt("zeta")
        try engine.queueInterrupt("alpha")
        try engine.queueInterrupt("zeta")  // already pending: runs once
        try engine.queueInterrupt("mid")
        #expect(engine.pendingInterrupts == ["zeta", "alpha", "mid"])
        // Registering the flag announces the pending work, in guest byte order.
        guest.enableInterrupts(engine, vcpu: vcpu, flag: flag)
        #expect(guest.bytes(at: flag, count: 8) == [0, 0, 0, 0, 0, 0, 0, 1])
        try engine.attach(.syscallEnter) { _ in 9 }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 9)
        #expect(order.withLock { $0 } == ["zeta", "alpha", "mid"])
        #expect(guest.bytes(at: 0x8001, count: 3) == Array("zam".utf8))
        #expect(guest.bytes(at: flag, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(engine.pendingInterrupts.isEmpty)
        #expect(log.matching("error").isEmpty)
    }

    @Test func flagIsSetAgainOnLaterTrapsWhileWorkIsPending() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.enableInterrupts(engine, vcpu: vcpu, flag: flag)
        engine.registerInterrupt("later") { _ in }
        try engine.attach(.syscallEnter) { _ in 1 }
        try engine.queueInterrupt("later")
        // The guest clears the flag by hand (a lost write): the next trap sets it again.
        guest.store([UInt8](repeating: 0, count: 8), at: flag)
        var loop = PortalLoop(vcpu: vcpu, number: event, arg1: 0, arg2: 0, region: guest.freshRegion())
        while loop.trap(engine, guest: guest) {}
        #expect(guest.flagValue == 1)
    }

    /// A stray answer on a PORTAL_INTERRUPT trap (its conversation was
    /// ended meanwhile) ends the guest's loop; the pending interrupts stay
    /// pending, with the flag up, for the guest's next interrupt conversation.
    @Test func strayInterruptAnswerKeepsThePendingInterrupts() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        guest.enableInterrupts(engine, vcpu: vcpu, flag: flag)
        let ran = Atomic<Int>(0)
        engine.registerInterrupt("kept") { _ in ran.add(1, ordering: .relaxed) }
        try engine.queueInterrupt("kept")
        let region = guest.freshRegion()
        let outcome = engine.hypercall(
            Hypercall(number: UInt64(HypercallNumber.portalInterrupt.rawValue), arg3: region,
                      arg4: UInt64(ResponseCode.writeOK.rawValue)),
            vcpu: vcpu, memory: guest.memory)
        #expect(outcome == .handled)
        #expect(guest.header(at: region).op == 0)
        #expect(engine.pendingInterrupts == ["kept"])
        #expect(guest.flagValue == 1)
        #expect(log.matching("warn") == [
            "warn: hypercall 0x7902 on vCPU 0, region \(hex(region)): the guest answered WRITE_OK but no conversation is live on this region; its loop was ended",
        ])
        var loop = PortalLoop(vcpu: vcpu, number: HypercallNumber.portalInterrupt.rawValue, arg1: 0, arg2: 0,
                              region: guest.freshRegion())
        while loop.trap(engine, guest: guest) {}
        #expect(ran.load(ordering: .relaxed) == 1)
        #expect(engine.pendingInterrupts.isEmpty)
    }

    @Test func flagRegistrationIsChecked() {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let guest = MockGuest()
        let vcpu = engine.makeVCPU(index: 2)
        let refused = engine.hypercall(Hypercall(number: 0x7901, arg1: 0, vcpu: 2), vcpu: vcpu, memory: guest.memory)
        let accepted = engine.hypercall(Hypercall(number: 0xffff_ffff_0000_7901, arg1: flag, arg2: 5, vcpu: 2),
                                        vcpu: vcpu, memory: guest.memory)
        #expect(refused == .handled && accepted == .handled)
        #expect(log.matching("error") + log.matching("warn") == [
            "error: hypercall 0x7901 on vCPU 2: interrupt flag address 0 refused, expected the guest address of a u64",
            "warn: hypercall 0x7901 on vCPU 2: arg2 is 0x5, expected 0; using the flag at 0x7000",
        ])
    }

    @Test func queueingAnUnknownInterruptThrows() {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let error = #expect(throws: PortalError.self) { try engine.queueInterrupt("nobody") }
        #expect(error?.code == .noInterruptHandler)
        #expect(error?.code.name == "no-interrupt-handler")
        #expect(error?.description == "cannot queue interrupt 'nobody': no handler has that name")
        // The caller decides what to say: the engine logs nothing.
        #expect(log.all.isEmpty)
    }

    @Test func pendingQueueIsBounded() throws {
        let log = LogRecorder()
        var configuration = PortalConfiguration()
        configuration.maxInterrupts = 2
        let engine = makeEngine(configuration, log: log)
        for name in ["a", "b", "c"] { engine.registerInterrupt(name) { _ in } }
        try engine.queueInterrupt("a")
        try engine.queueInterrupt("b")
        let error = #expect(throws: PortalError.self) { try engine.queueInterrupt("c") }
        #expect(error?.code == .interruptLimit)
        #expect(error?.description == "cannot queue interrupt 'c': 2 interrupts are pending already (max_interrupts)")
        #expect(log.all.isEmpty)
        // Queueing one already pending is no error: it runs once.
        try engine.queueInterrupt("a")
        #expect(engine.pendingInterrupts == ["a", "b"])
    }

    @Test func installBudgetIsSharedByTheWindowAndWorkRequeuesItself() throws {
        var configuration = PortalConfiguration()
        configuration.installBudget = 5
        let engine = makeEngine(configuration)
        let (guest, vcpu) = bootedGuest(engine)
        guest.enableInterrupts(engine, vcpu: vcpu, flag: flag)
        let remaining = Lock(12)
        let grants = Lock<[Int]>([])
        engine.registerInterrupt("installer") { g in
            let wanted = remaining.withLock { $0 }
            let granted = g.takeInstallBudget(wanted)
            grants.withLock { $0.append(granted) }
            remaining.withLock { $0 -= granted }
            if granted < wanted { try g.queueInterrupt("installer") }
        }
        engine.registerInterrupt("greedy") { g in grants.withLock { $0.append(100 + g.takeInstallBudget(10)) } }
        try engine.queueInterrupt("installer")
        try engine.queueInterrupt("greedy")
        try engine.attach(.syscallEnter) { _ in 0 }
        for _ in 0..<4 { _ = guest.portal(engine, vcpu: vcpu, number: event) }
        // Window 1: installer 5, greedy 0. Window 2: installer 5. Window 3: installer 2.
        #expect(grants.withLock { $0 } == [5, 100, 5, 2])
        #expect(remaining.withLock { $0 } == 0)
        #expect(engine.pendingInterrupts.isEmpty)
    }

    struct Broken: Error, CustomStringConvertible { var description: String { "broken" } }

    @Test func aFailingHandlerDoesNotStopTheOthers() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        guest.enableInterrupts(engine, vcpu: vcpu, flag: flag)
        guest.map(0x8000, count: 4096)
        let ran = Lock<[String]>([])
        engine.registerInterrupt("first") { g in
            _ = try await g.read(UInt8.self, at: 0x8000)
            throw Broken()
        }
        engine.registerInterrupt("second") { g in
            _ = try await g.read(UInt8.self, at: 0x8000)
            ran.withLock { $0.append("second") }
        }
        try engine.queueInterrupt("first")
        try engine.queueInterrupt("second")
        _ = guest.portal(engine, vcpu: vcpu, number: HypercallNumber.portalInterrupt.rawValue, 1)
        #expect(ran.withLock { $0 } == ["second"])
        #expect(log.matching("error") == [
            "error: hypercall 0x7902 on vCPU 0, region 0x100000: interrupt 'first' failed: broken",
        ])
    }

    @Test func anAbandonedWindowQueuesTheHandlersItNeverReached() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine, regionPages: 1)
        guest.map(0x8000, count: 4096)
        for name in ["one", "two"] {
            engine.registerInterrupt(name) { g in _ = try await g.read(UInt8.self, at: 0x8000) }
        }
        try engine.queueInterrupt("one")
        try engine.queueInterrupt("two")
        var window = guest.startPortal(engine, vcpu: vcpu, number: HypercallNumber.portalInterrupt.rawValue, 1)
        _ = window.trap(engine, guest: guest)
        window.abandon(guest)
        // The guest drops the window and starts an ordinary conversation on the page.
        try engine.attach(.syscallEnter) { _ in 3 }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 3)
        #expect(engine.pendingInterrupts == ["two"])
        #expect(log.matching("error") == [
            "error: hypercall 0x7902 on vCPU 0, region 0x100000: interrupt 'one' was cut short: the guest started a new conversation on this region; the unfinished one was dropped",
        ])
        #expect(log.matching("warn") == [
            "warn: hypercall 0x7902 on vCPU 0, region 0x100000: the guest started a new conversation on this region; the unfinished one was dropped",
            "warn: hypercall 0x7902 on vCPU 0, region 0x100000: interrupt 'two' did not run; queued again",
        ])
    }
}

@Suite("Many conversations")
struct ConcurrencyTests {
    /// A handler doing a few dependent reads, so conversations take several traps.
    static func attachSummer(_ engine: PortalEngine) throws {
        try engine.attach(.syscallEnter) { g in
            var sum: UInt64 = 0
            for offset in 0..<3 as Range<UInt64> {
                sum += UInt64(try await g.read(UInt32.self, at: g.call.arg1 + offset * 4))
            }
            return sum + g.call.arg2
        }
    }

    @Test func thousandInterleavedConversationsOnEightVCPUs() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let guest = MockGuest(regionPages: 256)
        let vcpus = (0..<8).map { engine.makeVCPU(index: $0) }
        guest.registerRegion(engine, vcpu: vcpus[0])
        guest.map(0x9000, count: 4096)
        guest.store(guest.layout.bytes(of: UInt32(1)) + guest.layout.bytes(of: UInt32(20))
                    + guest.layout.bytes(of: UInt32(300)), at: 0x9000)
        try Self.attachSummer(engine)
        var results: [UInt64] = []
        var started = 0
        var active: [PortalLoop?] = Array(repeating: nil, count: 8)
        var turn = 0
        while results.count < 1000 {
            // A deterministic shuffle of which vCPU moves next.
            turn = (turn * 5 + 3) % 8
            if active[turn] == nil && started < 1000 {
                active[turn] = guest.startPortal(engine, vcpu: vcpus[turn], number: event, 0x9000, UInt64(started))
                started += 1
            }
            guard var loop = active[turn] else { continue }
            if loop.trap(engine, guest: guest) {
                active[turn] = loop
            } else {
                results.append(loop.result - loop.arg2)
                active[turn] = nil
            }
            #expect(engine.liveConversations <= 8)
        }
        #expect(results == Array(repeating: 321, count: 1000))
        #expect(engine.liveConversations == 0)
        #expect(log.matching("error").isEmpty && log.matching("warn").isEmpty)
    }

    @Test func nestedConversationWhileServingACommand() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x9000, count: 4096)
        guest.store([5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0], at: 0x9000)
        guest.store([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], at: 0x9100)
        try Self.attachSummer(engine)
        let inner = Lock<[UInt64]>([])
        // While serving the outer conversation's reads, the guest module makes
        // another portal call (as a kernel handler would), on another page.
        guest.onServe = { [unowned guest] header, vcpu in
            guard header.address == 0x9004 else { return }
            let result = guest.portal(engine, vcpu: vcpu, number: event, 0x9100, 1000)
            inner.withLock { $0.append(result) }
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event, 0x9000, 0) == 18)
        #expect(inner.withLock { $0 } == [1003])
    }

    /// Real threads, one per vCPU, each running many conversations (with
    /// nested ones) while another thread queues interrupts. Run under
    /// ThreadSanitizer by `make test`.
    @Test func realThreadsHammerTheEngine() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let guest = MockGuest(regionPages: 512)
        let setup = engine.makeVCPU(index: 99)
        guest.registerRegion(engine, vcpu: setup)
        guest.enableInterrupts(engine, vcpu: setup, flag: 0x7000)
        guest.map(0x9000, count: 4096)
        guest.store([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0], at: 0x9000)
        guest.store([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0], at: 0x9100)
        try Self.attachSummer(engine)
        let interruptRuns = Counter()
        engine.registerInterrupt("tick") { g in
            _ = try await g.read(UInt8.self, at: 0x9000)
            interruptRuns.add()
        }
        let wrong = Counter()
        let nested = Counter()
        guest.onServe = { [unowned guest] header, vcpu in
            if header.address == 0x9008 && vcpu.index % 2 == 0 {
                nested.add()
                if guest.portal(engine, vcpu: vcpu, number: event, 0x9100, 0) != 6 { wrong.add() }
            }
        }
        let threads = 8
        let perThread = 300
        // One more thread queues interrupts while the vCPUs run.
        runOnThreads(threads + 1) { index in
            if index == threads {
                for _ in 0..<200 { try? engine.queueInterrupt("tick") }
                return
            }
            let vcpu = engine.makeVCPU(index: index)
            for round in 0..<perThread {
                let result = guest.portal(engine, vcpu: vcpu, number: event, 0x9000, UInt64(round))
                if result != 6 + UInt64(round) { wrong.add() }
            }
        }
        _ = guest.portal(engine, vcpu: setup, number: event, 0x9000, 0)
        #expect(wrong.value == 0)
        #expect(nested.value >= threads / 2 * perThread)
        #expect(interruptRuns.value >= 1)
        #expect(engine.liveConversations == 0)
        #expect(engine.pendingInterrupts.isEmpty)
        #expect(log.matching("error").isEmpty)
    }
}
