@testable import PortalEngine
import Synchronization
import PortalTestSupport
import Testing

@Suite("Migration")
struct MigrationTests {
    /// The engine keys a conversation by its region, not by the vCPU that
    /// traps: one moves over vCPUs 0, 2, 3 and 1 between its traps while
    /// another conversation runs whole on vCPU 0, and each gets its answers.
    @Test func aConversationMovesAcrossVCPUsWhileAnotherRunsWholeOnItsFirst() throws {
        let engine = makeEngine()
        let guest = MockGuest()
        let vcpus = (0..<4).map { engine.makeVCPU(index: $0) }
        guest.registerRegion(engine, vcpu: vcpus[0])
        guest.map(0x9000, count: 4096)
        guest.store([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0], at: 0x9000)
        let startedOn = Lock<[Int]>([])
        try engine.attach(.syscallEnter) { g in
            startedOn.withLock { $0.append(g.call.vcpu) }
            var sum: UInt64 = 0
            for offset in 0..<3 as Range<UInt64> {
                sum += UInt64(try await g.read(UInt32.self, at: 0x9000 + offset * 4))
            }
            return sum + 25
        }
        try engine.attach(.syscallReturn) { g in
            _ = try await g.readTime()
            return 32
        }
        let region = guest.freshRegion()
        var moving = PortalLoop(vcpu: vcpus[0], number: event, arg1: 0, arg2: 0, region: region)
        var goesOn = moving.trap(engine, guest: guest)
        let other = guest.portal(engine, vcpu: vcpus[0], number: HypercallNumber.syscallReturn.rawValue)
        var path = [0]
        for index in [2, 3, 1] where goesOn {
            var next = PortalLoop(vcpu: vcpus[index], number: event, arg1: 0, arg2: 0, region: region)
            next.lastAnswer = moving.lastAnswer
            next.traps = moving.traps
            moving = next
            goesOn = moving.trap(engine, guest: guest)
            path.append(index)
        }
        #expect(!goesOn)
        #expect(path == [0, 2, 3, 1])
        #expect(moving.traps == 4)
        #expect(moving.result == 31)
        #expect(other == 32)
        #expect(startedOn.withLock { $0 } == [0])
        #expect(engine.liveConversations == 0)
    }
}
