@testable import PortalEngine
import PortalTestSupport
import Synchronization
import Testing

/// Direct memory first: a Swift handler's memory operations use the
/// emulator's own view of guest memory when the trap offers one, and the
/// portal (READ, READ_STR, WRITE) for what that view cannot reach.
@Suite("Direct memory")
struct DirectMemoryTests {
    /// A booted guest with pages 0x4000-0x6fff mapped and filled with a
    /// pattern, the commands it serves recorded as "READ 0x5000+4072".
    func setUp(_ configuration: PortalConfiguration = PortalConfiguration(), hiding hidden: Set<UInt64> = [],
               layout: GuestLayout = .little64)
        -> (PortalEngine, MockGuest, VCPU, DirectView, Lock<[String]>) {
        let engine = makeEngine(configuration, layout: layout)
        let (guest, vcpu) = bootedGuest(engine, layout: layout)
        guest.map(0x4000, count: 3 * 4096)
        guest.store((0..<3 * 4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }, at: 0x4000)
        let view = DirectView(guest, hiding: hidden)
        guest.directView = view
        let served = Lock<[String]>([])
        let ops = guest.ops
        guest.onServe = { header, _ in
            let name = ops.name(of: header.op) ?? "op \(header.op)"
            served.withLock { $0.append("\(name) 0x\(String(header.address, radix: 16))+\(header.size)") }
        }
        return (engine, guest, vcpu, view, served)
    }

    static func pattern(_ address: UInt64, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: Int(address - 0x4000) + $0) }
            .map { UInt8(truncatingIfNeeded: Int($0) &* 7 &+ 3) }
    }

    @Test func readsTheViewHoldsNeedNoRoundTrip() throws {
        let (engine, guest, vcpu, view, served) = setUp()
        guest.store([0x0d, 0xf0, 0xfe, 0xca, 0, 0, 0, 0] + Array("direct\0".utf8), at: 0x6000)
        let bytes = Lock<[UInt8]>([])
        try engine.attach(.syscallEnter) { g in
            let value = try await g.read(UInt64.self, at: 0x6000)
            let text = try await g.readString(at: 0x6008)
            let chunk = try await g.readBytes(at: 0x4ff0, count: 0x20)
            bytes.withLock { $0 = chunk }
            return value + UInt64(text == "direct" ? 1 : 0)
        }
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event)
        while loop.trap(engine, guest: guest) {}
        #expect(loop.result == 0xcafe_f00d + 1)
        #expect(loop.traps == 1)
        #expect(served.withLock { $0 } == [])
        #expect(view.reads == ["0x6000+8 ok", "0x6008+4072 ok", "0x4ff0+32 ok"])
        #expect(bytes.withLock { $0 } == Self.pattern(0x4ff0, 0x20))
    }

    @Test func aReadTheViewCannotServeGoesToTheGuest() throws {
        let (engine, guest, vcpu, view, served) = setUp(hiding: [0x5000])
        let bytes = Lock<[UInt8]>([])
        try engine.attach(.syscallEnter) { g in
            let value = try await g.read(UInt32.self, at: 0x5004)
            bytes.withLock { $0 = [] }
            let chunk = try await g.readBytes(at: 0x5000, count: 4096)
            bytes.withLock { $0 = chunk }
            return UInt64(value)
        }
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event)
        while loop.trap(engine, guest: guest) {}
        #expect(loop.result == UInt64(guest.layout.load(UInt32.self, from: Self.pattern(0x5004, 4))))
        #expect(served.withLock { $0 } == ["READ 0x5004+4", "READ 0x5000+4072", "READ 0x5fe8+24"])
        #expect(view.reads == ["0x5004+4 failed", "0x5000+4096 failed"])
        #expect(bytes.withLock { $0 } == Self.pattern(0x5000, 4096))
    }

    /// A read across a page the view cannot reach: the pages before it come
    /// from the view, the rest from READs starting at that page.
    @Test func aPartialViewServesItsPagesAndTheGuestTheRest() throws {
        let (engine, guest, vcpu, view, served) = setUp(hiding: [0x5000])
        let bytes = Lock<[UInt8]>([])
        try engine.attach(.syscallEnter) { g in
            let chunk = try await g.readBytes(at: 0x4800, count: 0x1000)
            bytes.withLock { $0 = chunk }
            return UInt64(chunk.count)
        }
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event)
        while loop.trap(engine, guest: guest) {}
        #expect(loop.result == 0x1000)
        #expect(view.reads == ["0x4800+4096 failed", "0x4800+2048 ok", "0x5000+2048 failed"])
        #expect(served.withLock { $0 } == ["READ 0x5000+2048"])
        #expect(bytes.withLock { $0 } == Self.pattern(0x4800, 0x1000))
    }

    /// Unmapped for the view and the guest alike: the error is the guest's
    /// answer, counting the bytes the view gave.
    @Test func aFailureIsTheGuestsAnswer() throws {
        let (engine, guest, vcpu, view, served) = setUp()
        let failure = Lock<String>("")
        try engine.attach(.syscallEnter) { g in
            do {
                _ = try await g.readBytes(at: 0x6f00, count: 0x200)
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
            return 0
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 0)
        #expect(view.reads == ["0x6f00+512 failed", "0x6f00+256 ok", "0x7000+256 failed"])
        #expect(served.withLock { $0 } == ["READ 0x7000+256"])
        #expect(failure.withLock { $0 } == GuestError.readFailed(op: 1, address: 0x6f00, count: 0x200, bytesRead: 0x100,
                                                               response: .readPartial).description)
    }

    @Test func aStringRunsFromTheViewIntoTheGuest() throws {
        let (engine, guest, vcpu, view, served) = setUp(hiding: [0x5000])
        guest.store(Array(repeating: UInt8(ascii: "a"), count: 16), at: 0x4ff0)
        guest.store(Array("bc\0".utf8), at: 0x5000)
        let text = Lock<String>("")
        try engine.attach(.syscallEnter) { g in
            let string = try await g.readString(at: 0x4ff0)
            text.withLock { $0 = string }
            return 0
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 0)
        #expect(text.withLock { $0 } == String(repeating: "a", count: 16) + "bc")
        #expect(view.reads == ["0x4ff0+16 ok", "0x5000+4056 failed"])
        #expect(served.withLock { $0 } == ["READ_STR 0x5000+4056"])
    }

    @Test func writesUseTheViewThenTheGuest() throws {
        let (engine, guest, vcpu, view, served) = setUp(hiding: [0x5000])
        let data = (0..<0x1400).map { UInt8(truncatingIfNeeded: $0 ^ 0x5a) }
        try engine.attach(.syscallEnter) { g in
            try await g.write(data, at: 0x4e00)
            try await g.write(UInt16(0xbeef), at: 0x6800)
            return 0
        }
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event)
        while loop.trap(engine, guest: guest) {}
        #expect(loop.traps == 3)
        #expect(view.writes == ["0x4e00+512 ok", "0x5000+4096 failed", "0x6800+2 ok"])
        #expect(served.withLock { $0 } == ["WRITE 0x5000+4072", "WRITE 0x5fe8+536"])
        #expect(guest.bytes(at: 0x4e00, count: data.count) == data, "the bytes written differ")
        #expect(guest.bytes(at: 0x6800, count: 2) == [0xef, 0xbe])
    }

    /// `direct_memory=off`, or raw commands: always the guest.
    @Test func offAndRawCommandsAlwaysAskTheGuest() throws {
        var configuration = PortalConfiguration()
        configuration.directMemory = false
        for (configuration, expected) in [(configuration, ["READ 0x4000+8", "READ 0x4008+8"]),
                                          (PortalConfiguration(), ["READ 0x4008+8"])] {
            let (engine, guest, vcpu, view, served) = setUp(configuration)
            try engine.attach(.syscallEnter) { g in
                let first = try await g.read(UInt64.self, at: 0x4000)
                guard case .readOK(let raw) = try await g.send(PortalCommand(op: g.ops.read, address: 0x4008, size: 8))
                else { return 0 }
                return first &+ g.layout.load(UInt64.self, from: raw)
            }
            let expectedValue = guest.layout.load(UInt64.self, from: Self.pattern(0x4000, 8))
                &+ guest.layout.load(UInt64.self, from: Self.pattern(0x4008, 8))
            #expect(guest.portal(engine, vcpu: vcpu, number: event) == expectedValue)
            #expect(served.withLock { $0 } == expected)
            #expect(view.reads == (configuration.directMemory ? ["0x4000+8 ok"] : []))
        }
    }
}
