@testable import PortalEngine
import Synchronization
import PortalTestSupport
import Testing

/// The interrupt flag's bytes and the windows that serve it (PROTOCOL.md §5):
/// when the flag is set and cleared, what a window finds, which handler a
/// name runs.
@Suite("Interrupt windows")
struct InterruptWindowTests {
    let flag: UInt64 = 0x7008
    let interrupt = HypercallNumber.portalInterrupt.rawValue

    /// A trap the engine does not own, as any hypercall of the guest.
    func plainTrap(_ engine: PortalEngine, _ guest: MockGuest, _ vcpu: VCPU) {
        #expect(engine.hypercall(Hypercall(number: 0x4242, vcpu: vcpu.index), vcpu: vcpu, memory: guest.memory) == .notMine)
    }

    /// The flag is 8 bytes in guest order whatever the word size: set by a
    /// trap after the queueing, cleared by the window's first trap, and the
    /// bytes around it are never touched.
    @Test(arguments: [GuestLayout.little64, .big64, .little32, .big32])
    func theFlagIsEightBytesInGuestOrderClearedAtTheWindowsFirstTrap(layout: GuestLayout) throws {
        let engine = makeEngine(layout: layout)
        let (guest, vcpu) = bootedGuest(engine, layout: layout)
        guest.map(flag, count: 8, fill: 0xcc)
        guest.enableInterrupts(engine, vcpu: vcpu, flag: flag)
        let around = [UInt8](repeating: 0xcc, count: 8)
        let ran = Counter()
        engine.registerInterrupt("alpha") { g in
            _ = try await g.read(UInt8.self, at: 0x7000)
            ran.add()
        }
        try engine.queueInterrupt("alpha")
        plainTrap(engine, guest, vcpu)
        #expect(guest.bytes(at: flag - 8, count: 24) == around + layout.bytes(of: UInt64(1)) + around)
        var window = guest.startPortal(engine, vcpu: vcpu, number: interrupt, flag)
        let goesOn = window.trap(engine, guest: guest)
        #expect(goesOn)
        let cleared = around + [UInt8](repeating: 0, count: 8) + around
        #expect(guest.bytes(at: flag - 8, count: 24) == cleared)
        while window.trap(engine, guest: guest) {}
        #expect(ran.value == 1)
        #expect(guest.bytes(at: flag - 8, count: 24) == cleared)
    }

    /// Work queued before the module came up runs in the module's first
    /// window (PORTAL_INTERRUPT with arg1 1), which leaves the flag down.
    @Test func workQueuedBeforeTheModuleCameUpRunsInItsFirstWindow() throws {
        let log = LogRecorder()
        let engine = makeEngine(layout: .big32, log: log)
        engine.registerInterrupt("alpha") { g in try await g.write(UInt64(0x2222), at: 0x8000) }
        try engine.queueInterrupt("alpha")
        let (guest, vcpu) = bootedGuest(engine, layout: .big32)
        guest.map(0x8000, count: 4096)
        guest.enableInterrupts(engine, vcpu: vcpu, flag: flag)
        let sent = Lock<[[UInt64]]>([])
        guest.onServe = { header, _ in sent.withLock { $0.append([UInt64(header.op), header.address, header.size]) } }
        var window = guest.startPortal(engine, vcpu: vcpu, number: interrupt, 1)
        while window.trap(engine, guest: guest) {}
        #expect(window.traps == 2)
        #expect(sent.withLock { $0 } == [[2, 0x8000, 8]])
        #expect(guest.bytes(at: 0x8000, count: 8) == [0, 0, 0, 0, 0, 0, 0x22, 0x22])
        #expect(guest.flagValue == 0)
        #expect(engine.pendingInterrupts.isEmpty)
        #expect(log.matching("error").isEmpty && log.matching("warn").isEmpty)
    }

    /// Two vCPUs both saw the flag: the first window takes the work, the
    /// second finds nothing pending and ends at its first trap.
    @Test func aSecondWindowFindsNothingAndEndsAtItsFirstTrap() throws {
        let engine = makeEngine()
        let guest = MockGuest()
        let vcpus = (0..<2).map { engine.makeVCPU(index: $0) }
        guest.registerRegion(engine, vcpu: vcpus[0])
        guest.enableInterrupts(engine, vcpu: vcpus[0], flag: flag)
        guest.map(0x8000, count: 4096)
        let ran = Counter()
        engine.registerInterrupt("alpha") { g in
            try await g.write(UInt64(0x5151), at: 0x8000)
            ran.add()
        }
        try engine.queueInterrupt("alpha")
        plainTrap(engine, guest, vcpus[0])
        #expect(guest.flagValue == 1)
        var first = PortalLoop(vcpu: vcpus[0], number: interrupt, arg1: flag, arg2: 0, region: guest.freshRegion())
        var second = PortalLoop(vcpu: vcpus[1], number: interrupt, arg1: flag, arg2: 0, region: guest.freshRegion())
        let firstGoesOn = first.trap(engine, guest: guest)
        let secondGoesOn = second.trap(engine, guest: guest)
        #expect(firstGoesOn && !secondGoesOn)
        #expect(second.traps == 1)
        while first.trap(engine, guest: guest) {}
        #expect(ran.value == 1)
        #expect(guest.bytes(at: 0x8000, count: 8) == [0x51, 0x51, 0, 0, 0, 0, 0, 0])
        #expect(guest.flagValue == 0)
    }

    /// The flag's page is not mapped when work is queued: the flag cannot
    /// be set, nothing runs and nothing is logged; a trap after the page
    /// appears sets it, and the next window runs the work.
    @Test func aFlagOnAnUnmappedPageIsSetOnceThePageAppears() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        guest.enableInterrupts(engine, vcpu: vcpu, flag: flag)
        guest.unmap(flag)
        let ran = Counter()
        engine.registerInterrupt("alpha") { _ in ran.add() }
        try engine.attach(.syscallEnter) { _ in 1 }
        try engine.queueInterrupt("alpha")
        plainTrap(engine, guest, vcpu)
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 1)
        #expect(ran.value == 0)
        guest.map(flag, count: 8)
        plainTrap(engine, guest, vcpu)
        #expect(guest.flagValue == 1)
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 1)
        #expect(ran.value == 1)
        #expect(guest.flagValue == 0)
        #expect(log.all.filter { !$0.hasPrefix("debug") && !$0.hasPrefix("info") }.isEmpty)
    }

    /// Registering a name again replaces its handler.
    @Test func aLaterRegistrationOfANameReplacesItsHandler() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        let ran = Lock<[String]>([])
        engine.registerInterrupt("alpha") { _ in ran.withLock { $0.append("first") } }
        engine.registerInterrupt("alpha") { _ in ran.withLock { $0.append("second") } }
        try engine.queueInterrupt("alpha")
        _ = guest.portal(engine, vcpu: vcpu, number: interrupt, 1)
        #expect(ran.withLock { $0 } == ["second"])
    }
}
