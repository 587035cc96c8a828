#if canImport(Glibc)
import Glibc
#endif
import PortalControl
import PortalEngine
import PortalTestSupport
import Testing

/// The recorder behind `query-stats` and `trace=PATH`, driven by a `MockGuest`.
struct RecordingTests {
    struct Failure: Error, CustomStringConvertible {
        var description: String { "no such thing" }
    }

    /// A kernel address nothing maps: the guest answers a READ there
    /// READ_FAIL (kernel reads are all or nothing).
    static let unmappedKernelAddress: UInt64 = 0xffff_ffff_8100_0000

    /// The guest module on vCPU 0 of `engine`, its region registered and its
    /// first page (0 to 0xfff) mapped for the handlers to read and write.
    /// - Parameter regionPages: its pool of region pages; with one, every
    ///   conversation runs on the same region (0x100000).
    static func bootedGuest(_ engine: PortalEngine, regionPages: Int = 64) -> (MockGuest, VCPU) {
        let guest = MockGuest(regionPages: regionPages)
        let vcpu = engine.makeVCPU(index: 0)
        guest.registerRegion(engine, vcpu: vcpu)
        guest.map(0, count: MockGuest.pageSize)
        return (guest, vcpu)
    }

    /// One conversation on hypercall 0x1338 whose guest serves the first
    /// command and then leaves it unfinished (its region freed, the loop
    /// not ended).
    /// - Returns: the command it served.
    static func leftAfterOneCommand(_ guest: MockGuest, _ engine: PortalEngine, _ vcpu: VCPU) -> [String] {
        guest.served(during: {
            var loop = guest.startPortal(engine, vcpu: vcpu, number: 0x1338)
            _ = loop.trap(engine, guest: guest)
            loop.abandon(guest)
        })
    }

    @Test func statisticsAndTraceOfFailedReclaimedAndFinishedConversations() throws {
        let path = "/tmp/portal-recording-test-\(getpid()).jsonl"
        defer { unlink(path) }
        let recorder = ControlRecorder(trace: try TraceFile(path: path, ops: .standard))
        let engine = PortalEngine(configuration: PortalConfiguration(), layout: .little64,
                                  logger: PortalLogger(level: .off) { _ in }, recorder: recorder)
        // One region page: every conversation runs on the same region.
        let (guest, vcpu) = Self.bootedGuest(engine, regionPages: 1)
        try engine.attach(HypercallNumber(rawValue: 0x1338)) { guest in
            let bytes = try await guest.readBytes(at: 0x100, count: 4)
            if guest.call.arg1 == 1 { throw Failure() }
            if guest.call.arg1 == 2 { return 7 }
            try await guest.write([9], at: 0x200)
            _ = try await guest.readBytes(at: Self.unmappedKernelAddress, count: 2)   // READ_FAIL
            return UInt64(bytes.count)
        }
        _ = guest.portal(engine, vcpu: vcpu, number: 0x1338)      // READ, WRITE, READ: fails at the READ_FAIL
        _ = guest.portal(engine, vcpu: vcpu, number: 0x1338, 1)   // READ, then the handler throws
        // A READ the guest never answers: it leaves ...
        #expect(Self.leftAfterOneCommand(guest, engine, vcpu) == ["READ pid=-1 addr=256 size=4"])
        _ = guest.portal(engine, vcpu: vcpu, number: 0x1338)      // ... and starts anew on the page: reclaimed
        _ = guest.portal(engine, vcpu: vcpu, number: 0x1338, 2)   // READ, finished
        let stats = recorder.stats.snapshot(ops: .standard)
        #expect(stats["round-trips"] == .int(8))
        #expect(stats["ops"] == .object([("READ", .int(6)), ("WRITE", .int(2))]))
        #expect(stats["responses"] == .object([("READ_OK", .int(4)), ("READ_FAIL", .int(2)), ("WRITE_OK", .int(2))]))
        #expect(stats["conversations"] == .object([("started", .int(5)), ("ended", .int(1)), ("failed", .int(3)),
                                                   ("reclaimed", .int(1))]))
        let latency = try #require(stats["latency-ns"])
        #expect(latency["p50"]!.uint64Value! <= latency["p99"]!.uint64Value!)
        #expect(latency["p99"]!.uint64Value! <= latency["max"]!.uint64Value!)

        let lines = traceLines(path)
        let site = #""vcpu":0,"hypercall":4920,"region":1048576"#
        #expect(lines == [
            #"{"event":"conversation-start",\#(site)}"#,
            #"{"event":"round-trip",\#(site),"op":"READ","address":256,"size":4,"response":"READ_OK","payload":4}"#,
            #"{"event":"round-trip",\#(site),"op":"WRITE","address":512,"size":1,"response":"WRITE_OK","payload":0}"#,
            #"{"event":"round-trip",\#(site),"op":"READ","address":18446744071578845184,"size":2,"response":"READ_FAIL","payload":0}"#,
            #"{"event":"conversation-end",\#(site),"outcome":"failed","reason":"the work failed: reading 2 bytes at 0xffffffff81000000 stopped after 0 bytes (READ_FAIL)"}"#,
            #"{"event":"conversation-start",\#(site)}"#,
            #"{"event":"round-trip",\#(site),"op":"READ","address":256,"size":4,"response":"READ_OK","payload":4}"#,
            #"{"event":"conversation-end",\#(site),"outcome":"failed","reason":"the work failed: no such thing"}"#,
            #"{"event":"conversation-start",\#(site)}"#,
            #"{"event":"conversation-end",\#(site),"outcome":"reclaimed","reason":"the guest started a new conversation on this region; the unfinished one was dropped"}"#,
            #"{"event":"conversation-start",\#(site)}"#,
            #"{"event":"round-trip",\#(site),"op":"READ","address":256,"size":4,"response":"READ_OK","payload":4}"#,
            #"{"event":"round-trip",\#(site),"op":"WRITE","address":512,"size":1,"response":"WRITE_OK","payload":0}"#,
            #"{"event":"round-trip",\#(site),"op":"READ","address":18446744071578845184,"size":2,"response":"READ_FAIL","payload":0}"#,
            #"{"event":"conversation-end",\#(site),"outcome":"failed","reason":"the work failed: reading 2 bytes at 0xffffffff81000000 stopped after 0 bytes (READ_FAIL)"}"#,
            #"{"event":"conversation-start",\#(site)}"#,
            #"{"event":"round-trip",\#(site),"op":"READ","address":256,"size":4,"response":"READ_OK","payload":4}"#,
            #"{"event":"conversation-end",\#(site),"outcome":"finished"}"#,
        ])
    }

    /// A conversation reclaimed to make room in a full waiting table
    /// (max_conversations) counts as reclaimed, not failed, in the
    /// statistics and the trace alike.
    @Test func conversationReclaimedForRoomCountsAsReclaimed() throws {
        let path = "/tmp/portal-recording-room-test-\(getpid()).jsonl"
        defer { unlink(path) }
        let recorder = ControlRecorder(trace: try TraceFile(path: path, ops: .standard))
        var configuration = PortalConfiguration()
        configuration.maxConversations = 1
        let engine = PortalEngine(configuration: configuration, layout: .little64,
                                  logger: PortalLogger(level: .off) { _ in }, recorder: recorder)
        let (guest, vcpu) = Self.bootedGuest(engine)
        try engine.attach(HypercallNumber(rawValue: 0x1338)) { guest in
            UInt64(try await guest.readBytes(at: 0x100, count: 4).count)
        }
        // Waits for its answer on region 0x100000 ...
        #expect(Self.leftAfterOneCommand(guest, engine, vcpu) == ["READ pid=-1 addr=256 size=4"])
        // ... and is reclaimed for this one, on the pool's next page, 0x102000.
        var result: UInt64 = 0
        #expect(guest.served(during: { result = guest.portal(engine, vcpu: vcpu, number: 0x1338) })
            == ["READ pid=-1 addr=256 size=4"])
        #expect(result == 4)
        let stats = recorder.stats.snapshot(ops: .standard)
        #expect(stats["conversations"] == .object([("started", .int(2)), ("ended", .int(1)), ("failed", .int(0)),
                                                   ("reclaimed", .int(1))]))

        #expect(traceLines(path).filter { $0.contains("conversation-end") } == [
            #"{"event":"conversation-end","vcpu":0,"hypercall":4920,"region":1048576,"outcome":"reclaimed","reason":"1 conversations were waiting (max_conversations) and the guest had not come back to this one for the longest (1 conversations started waiting since its last trap); reclaimed to make room"}"#,
            #"{"event":"conversation-end","vcpu":0,"hypercall":4920,"region":1056768,"outcome":"finished"}"#,
        ])
    }

    /// The trace file's lines, without their times and latencies (they vary).
    func traceLines(_ path: String) -> [String] {
        let file = fopen(path, "r")
        defer { fclose(file) }
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, 4096, file) != nil {
            var line = String(cString: buffer)
            line.removeLast()
            line = line.replacing(/"time":[0-9]+,/, with: "").replacing(/,"ns":[0-9]+/, with: "")
            lines.append(line)
        }
        return lines
    }
}
