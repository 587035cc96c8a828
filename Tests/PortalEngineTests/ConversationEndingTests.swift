@testable import PortalEngine
import Synchronization
import Testing

/// How conversations' endings are sorted for `query-stats` and the trace:
/// finished, reclaimed (the guest left it waiting and the engine took it
/// back) or failed.
@Suite("Conversation endings")
struct ConversationEndingTests {
    /// Keeps every conversation end the engine reports, in order.
    final class EndingRecorder: PortalRecorder {
        let started = Atomic<Int>(0)
        let failures = Lock<[PortalError?]>([])

        func conversationStarted(at site: TrapSite) { started.add(1, ordering: .relaxed) }
        func conversationEnded(at site: TrapSite, failure: PortalError?) { failures.withLock { $0.append(failure) } }
        func roundTrip(_ roundTrip: RoundTrip) {}
    }

    @Test func everyWayTheEngineTakesAConversationBackIsReclaimed() {
        #expect(ConversationEnding(failure: nil) == .finished)
        #expect(ConversationEnding(failure: .abandoned) == .reclaimed)
        #expect(ConversationEnding(failure: .neverCameBack(waitStarts: 9)) == .reclaimed)
        #expect(ConversationEnding(failure: .evictedForRoom(limit: 2, waitStarts: 2)) == .reclaimed)
        #expect(ConversationEnding(failure: .workFailed("no")) == .failed)
        #expect(ConversationEnding(failure: .unloaded) == .failed)
        #expect(ConversationEnding(failure: .strayAnswer(.readOK)) == .failed)
        #expect(ConversationEnding(failure: .invalidResponse(0x1234)) == .failed)
    }

    /// A full waiting table reclaims the conversation the guest neglected
    /// longest: the recorder hears it ended as `reclaimed-for-room`, which
    /// counts as reclaimed, not failed.
    @Test func aConversationReclaimedForRoomIsCountedAsReclaimed() throws {
        let recorder = EndingRecorder()
        var configuration = PortalConfiguration()
        configuration.maxConversations = 2
        let engine = PortalEngine(configuration: configuration, layout: .little64,
                                  logger: LogRecorder().logger, recorder: recorder)
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x4000, count: 4096)
        struct Refused: Error {}
        try engine.attach(.syscallEnter) { g in
            let byte = try await g.read(UInt8.self, at: 0x4000)
            if g.call.arg1 == 1 { throw Refused() }
            return UInt64(byte) + 10
        }
        // Three conversations wait on a table of two: the third's admission
        // reclaims the first.
        var loops = (0..<3).map { _ in guest.startPortal(engine, vcpu: vcpu, number: event) }
        let waiting = loops.indices.map { loops[$0].trap(engine, guest: guest) }
        #expect(waiting == [true, true, true])
        for index in loops.indices { while loops[index].trap(engine, guest: guest) {} }
        #expect(loops.map(\.result) == [UInt64(event), 10, 10])
        // One whose work fails.
        #expect(guest.portal(engine, vcpu: vcpu, number: event, 1) == UInt64(event))

        let failures = recorder.failures.withLock { $0 }
        #expect(recorder.started.load(ordering: .relaxed) == 4)
        #expect(failures.map { $0?.code } == [.reclaimedForRoom, nil, nil, .workFailed])
        #expect(failures.map(ConversationEnding.init(failure:)) == [.reclaimed, .finished, .finished, .failed])
        #expect(engine.liveConversations == 0)
    }
}
