@testable import PortalEngine
import Synchronization
import Testing

@Suite("Nested conversations")
struct NestingTests {
    /// Three levels, each started while the guest serves the level above:
    /// level 2 writes what level 1 reads, level 1 writes what level 0 reads.
    /// The engine keeps them apart by region: three regions, each answer to
    /// its own conversation.
    @Test func threeLevelsEachOnItsOwnRegion() throws {
        let engine = makeEngine(layout: .little32)
        let (guest, vcpu) = bootedGuest(engine, layout: .little32)
        let outer: UInt64 = 0x9000, inner: UInt64 = 0x9008
        guest.map(0x9000, count: 4096)
        let level1 = HypercallNumber.syscallReturn, level2 = HypercallNumber(rawValue: 0x133b)
        let regions = Lock<[UInt64]>([])
        try engine.attach(.syscallEnter) { g in
            regions.withLock { $0.append(g.call.arg3) }
            return try await g.read(UInt64.self, at: outer)
        }
        try engine.attach(level1) { g in
            regions.withLock { $0.append(g.call.arg3) }
            let value = try await g.read(UInt64.self, at: inner)
            try await g.write(UInt64(0x1111_1111_1111_1111), at: outer)
            return value
        }
        try engine.attach(level2) { g in
            regions.withLock { $0.append(g.call.arg3) }
            try await g.write(UInt64(0x2222_2222_2222_2222), at: inner)
            return 2
        }
        let served = Lock<[String]>([])
        let nested = Lock<[UInt64]>([])
        guest.onServe = { [unowned guest] header, vcpu in
            served.withLock { $0.append("\(header.op) \(hex(header.address))") }
            guard header.op == 1 else { return }
            let number = header.address == outer ? level1 : level2
            let result = guest.portal(engine, vcpu: vcpu, number: number.rawValue)
            nested.withLock { $0.append(result) }
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 0x1111_1111_1111_1111)
        #expect(nested.withLock { $0 } == [2, 0x2222_2222_2222_2222])
        #expect(served.withLock { $0 } == ["1 0x9000", "1 0x9008", "2 0x9008", "2 0x9000"])
        let used = regions.withLock { $0 }
        #expect(used.count == 3 && Set(used).count == 3)
        #expect(engine.liveConversations == 0)
    }
}
