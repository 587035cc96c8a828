import PortalControl
import PortalEngine
import PortalTestSupport
import Testing

/// `watch-syscall` next to an analysis module's own work on 0x1338.
struct SyscallWatchTests {
    /// The watch announces the event and takes nothing from the module's
    /// work: that work still runs in the same conversation (after the
    /// watch's read), still writes the event, and still decides the result.
    @Test func announcesTheEventAndTheModulesWorkStillServesTheHypercall() throws {
        let recorder = ControlRecorder(trace: nil)
        let events = Lock<[(String, JSONValue)]>([])
        recorder.sendEvents { name, data in events.withLock { $0.append((name, data)) } }
        let engine = PortalEngine(configuration: PortalConfiguration(), layout: .little64,
                                  logger: PortalLogger(level: .off) { _ in }, recorder: recorder)
        let (guest, vcpu) = RecordingTests.bootedGuest(engine)
        guest.store(SyscallEventTests.littleEndian64("openat", argc: 4), at: 0x400)
        // The module: rewrites args[1] and answers 5.
        try engine.attach(HypercallNumber(rawValue: 0x1338)) { g in
            try await g.write(UInt64(0x99), at: g.call.arg1 + 8)
            return 5
        }
        let watch = SyscallWatch(engine: engine, recorder: recorder)
        #expect(watch.watch("openat", enabled: true) == ["openat"])

        let served = guest.served {
            #expect(guest.portal(engine, vcpu: vcpu, number: 0x1338, 0x400) == 5)
        }
        #expect(served == ["READ pid=-1 addr=1024 size=160", "WRITE pid=-1 addr=1032 size=8"])
        #expect(guest.mappedBytes(at: 0x408, count: 8) == [0x99, 0, 0, 0, 0, 0, 0, 0])
        let announced = events.withLock { $0 }
        #expect(announced.count == 1)
        #expect(announced.first?.0 == "PORTAL_SYSCALL")
        #expect(announced.first?.1 == .object([
            ("name", .string("openat")), ("pid", .int(4242)), ("vcpu", .int(0)),
            ("pc", .uint(0xffff_ffff_8100_0000)), ("argc", .int(4)),
            ("args", .array((0..<6).map { .int(0x1000 + Int64($0)) })),
        ]))

        // Not watched any more: the module's work alone, one round trip.
        #expect(watch.watch("openat", enabled: false) == [])
        let alone = guest.served {
            #expect(guest.portal(engine, vcpu: vcpu, number: 0x1338, 0x400) == 5)
        }
        #expect(alone == ["WRITE pid=-1 addr=1032 size=8"])
        #expect(events.withLock { $0.count } == 1)
        // With nothing watched the watch observes nothing: without the
        // module, 0x1338 is not the plugin's any more.
        #expect(engine.detach(HypercallNumber(rawValue: 0x1338)))
        #expect(engine.hypercall(Hypercall(number: 0x1338, arg1: 0x400, arg3: 0x10_0000), vcpu: vcpu,
                                 memory: guest.memory) == .notMine)
        // Watched again: the watch alone serves it, announces, and answers 0.
        #expect(watch.watch("openat", enabled: true) == ["openat"])
        #expect(guest.portal(engine, vcpu: vcpu, number: 0x1338, 0x400) == 0)
        #expect(events.withLock { $0.count } == 2)
    }
}
