@testable import PortalEngine
import PortalTestSupport
import Synchronization
import Testing

/// Observers (`PortalEngine.observe`): work that runs first in a
/// hypercall's conversations without taking them from the attached work.
@Suite("Observers")
struct ObserverTests {
    struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }

    /// An engine and a guest whose page at 0x4000 holds 0x11, 0x22, 0x33.
    private func setUp(_ log: LogRecorder = LogRecorder()) -> (PortalEngine, MockGuest, VCPU) {
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x4000, count: 4096)
        guest.store([0x11, 0x22, 0x33], at: 0x4000)
        return (engine, guest, vcpu)
    }

    @Test func observersRunFirstInTheConversationAndTheAttachedWorkDecidesTheResult() throws {
        let (engine, guest, vcpu) = setUp()
        let seen = Lock<[String]>([])
        try engine.attach(.syscallEnter) { g in
            UInt64(try await g.read(UInt8.self, at: 0x4002)) + g.call.arg1
        }
        try engine.observe(.syscallEnter, as: "first") { g in
            let value = try await g.read(UInt8.self, at: 0x4000)
            seen.withLock { $0.append("first \(value)") }
            return 1000
        }
        try engine.observe(.syscallEnter, as: "second") { g in
            let value = try await g.read(UInt8.self, at: 0x4001)
            seen.withLock { $0.append("second \(value)") }
            return 2000
        }
        let served = guest.served {
            #expect(guest.portal(engine, vcpu: vcpu, number: event, 5) == 0x33 + 5)
        }
        #expect(served == ["READ pid=-1 addr=16384 size=1", "READ pid=-1 addr=16385 size=1",
                           "READ pid=-1 addr=16386 size=1"])
        #expect(seen.withLock { $0 } == ["first 17", "second 34"])
        #expect(engine.liveConversations == 0)
    }

    @Test func attachAndDetachLeaveObserversInPlace() throws {
        let (engine, guest, vcpu) = setUp()
        let observed = Counter()
        try engine.observe(.syscallEnter, as: "count") { _ in observed.add(); return 9 }
        // No work attached: the hypercall is the plugin's and returns 0.
        #expect(engine.serves(UInt64(event), vcpu: vcpu))
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 0)
        try engine.attach(.syscallEnter) { _ in 7 }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 7)
        try engine.attach(.syscallEnter) { _ in 8 }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 8)
        #expect(engine.detach(.syscallEnter))
        #expect(!engine.detach(.syscallEnter))
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 0)
        #expect(observed.value == 4)
        // Gone: the hypercall is no longer the plugin's.
        #expect(engine.stopObserving(.syscallEnter, as: "count"))
        #expect(!engine.stopObserving(.syscallEnter, as: "count"))
        #expect(!engine.serves(UInt64(event), vcpu: vcpu))
        #expect(engine.hypercall(Hypercall(number: UInt64(event), arg3: 0x10_0000), vcpu: vcpu,
                                 memory: guest.memory) == .notMine)
        #expect(observed.value == 4)
    }

    @Test func observingAgainUnderANameReplacesThatObserver() throws {
        let (engine, guest, vcpu) = setUp()
        let seen = Lock<[String]>([])
        try engine.observe(.syscallEnter, as: "a") { _ in seen.withLock { $0.append("a1") }; return 0 }
        try engine.observe(.syscallEnter, as: "b") { _ in seen.withLock { $0.append("b") }; return 0 }
        try engine.observe(.syscallEnter, as: "a") { _ in seen.withLock { $0.append("a2") }; return 0 }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        #expect(seen.withLock { $0 } == ["a2", "b"])
    }

    @Test func aFailingObserverIsLoggedAndTheAttachedWorkRunsAllTheSame() throws {
        let log = LogRecorder()
        let (engine, guest, vcpu) = setUp(log)
        try engine.observe(.syscallEnter, as: "fragile") { g in
            _ = try await g.read(UInt8.self, at: 0x4000)
            throw Boom()
        }
        try engine.attach(.syscallEnter) { g in UInt64(try await g.read(UInt8.self, at: 0x4001)) }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 0x22)
        #expect(log.matching("warn") == [
            "warn: hypercall 0x1338 on vCPU 0, region 0x100000: observer 'fragile' failed: boom; the conversation goes on",
        ])
        #expect(log.matching("error") == [])
        #expect(engine.liveConversations == 0)
    }

    @Test func theProtocolsOwnHypercallsCannotBeObserved() {
        let engine = makeEngine()
        #expect(throws: PortalError(.reservedHypercall,
                                    "cannot observe hypercall 0xbebebebe: the portal protocol uses it")) {
            try engine.observe(.registerMemRegion, as: "x") { _ in 0 }
        }
    }

    /// The conversation ends while an observer waits (the plugin unloads):
    /// the observer is cancelled, and the attached work never starts.
    @Test func anObserverWaitingAtUnloadIsCancelled() throws {
        let (engine, guest, vcpu) = setUp()
        let outcome = Lock<[String]>([])
        try engine.observe(.syscallEnter, as: "waiting") { g in
            do {
                _ = try await g.read(UInt8.self, at: 0x4000)
            } catch {
                outcome.withLock { $0.append("observer: \(error)") }
                throw error
            }
            return 0
        }
        try engine.attach(.syscallEnter) { _ in outcome.withLock { $0.append("attached work ran") }; return 1 }
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event)
        _ = loop.trap(engine, guest: guest)
        engine.shutdown()
        #expect(outcome.withLock { $0 } == [
            "observer: the plugin was unloaded while the conversation waited for the guest; ended",
        ])
    }
}
