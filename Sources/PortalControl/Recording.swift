#if canImport(Glibc)
import Glibc
#endif
import PortalEngine

/// Round-trip and conversation counts and a latency histogram, behind
/// `query-stats`. Updated on vCPU threads under one lock (only when the
/// plugin was asked for a control socket or a trace).
package final class PortalStats: Sendable {
    private let state = Lock(Counters())

    private struct Counters {
        var roundTrips: UInt64 = 0
        var perOp: [UInt32: UInt64] = [:]
        var perResponse: [UInt32: UInt64] = [:]
        var started: UInt64 = 0
        var ended: UInt64 = 0
        var failed: UInt64 = 0
        var reclaimed: UInt64 = 0
        var latency = [UInt64](repeating: 0, count: LatencyBuckets.count)
        var slowest: UInt64 = 0
    }

    /// Creates empty counters.
    package init() {}

    func conversationStarted() { state.withLock { $0.started += 1 } }

    func conversationEnded(failure: PortalError?) {
        let ending = ConversationEnding(failure: failure)
        state.withLock { counters in
            switch ending {
            case .finished: counters.ended += 1
            case .reclaimed: counters.reclaimed += 1
            case .failed: counters.failed += 1
            }
        }
    }

    func roundTrip(_ roundTrip: RoundTrip) {
        let bucket = LatencyBuckets.index(of: roundTrip.nanoseconds)
        state.withLock { counters in
            counters.roundTrips += 1
            counters.perOp[roundTrip.op, default: 0] += 1
            counters.perResponse[roundTrip.response.rawValue, default: 0] += 1
            counters.latency[bucket] += 1
            counters.slowest = max(counters.slowest, roundTrip.nanoseconds)
        }
    }

    /// The counters as `query-stats` returns them.
    /// - Parameter ops: the op table, for op names.
    /// - Returns: round trips per op and per response code, conversations
    ///   started/ended/failed/reclaimed, and latency percentiles in
    ///   nanoseconds (each the upper bound of its histogram bucket, within 12.5 %).
    package func snapshot(ops: OpTable) -> JSONValue {
        let counters = state.withLock { $0 }
        func percentile(_ fraction: Double) -> JSONValue {
            guard counters.roundTrips > 0 else { return .null }
            let rank = max(1, UInt64((Double(counters.roundTrips) * fraction).rounded(.up)))
            var seen: UInt64 = 0
            for (index, count) in counters.latency.enumerated() {
                seen += count
                if seen >= rank { return .uint64(min(LatencyBuckets.upperBound(of: index), counters.slowest)) }
            }
            return .uint64(counters.slowest)
        }
        return .object([
            ("round-trips", .uint64(counters.roundTrips)),
            ("ops", .object(counters.perOp.sorted { $0.key < $1.key }.map { op, count in
                (ops.name(of: op) ?? "op \(op)", .uint64(count))
            })),
            ("responses", .object(counters.perResponse.sorted { $0.key < $1.key }.map { code, count in
                (ResponseCode(rawValue: code).description, .uint64(count))
            })),
            ("conversations", .object([
                ("started", .uint64(counters.started)), ("ended", .uint64(counters.ended)),
                ("failed", .uint64(counters.failed)), ("reclaimed", .uint64(counters.reclaimed)),
            ])),
            ("latency-ns", .object([
                ("p50", percentile(0.5)), ("p90", percentile(0.9)), ("p99", percentile(0.99)),
                ("max", counters.roundTrips > 0 ? .uint64(counters.slowest) : .null),
            ])),
        ])
    }
}

/// A log-linear histogram layout: exact below 16 ns, then 8 buckets per
/// power of two (12.5 % wide).
enum LatencyBuckets {
    static let count = 16 + 60 * 8

    static func index(of nanoseconds: UInt64) -> Int {
        guard nanoseconds >= 16 else { return Int(nanoseconds) }
        let exponent = 63 - nanoseconds.leadingZeroBitCount
        let mantissa = Int((nanoseconds >> UInt64(exponent - 3)) & 7)
        return 16 + (exponent - 4) * 8 + mantissa
    }

    static func upperBound(of index: Int) -> UInt64 {
        guard index >= 16 else { return UInt64(index) }
        let exponent = (index - 16) / 8 + 4
        let mantissa = UInt64((index - 16) % 8)
        let width = UInt64(1) << UInt64(exponent - 3)
        let (lower, overflow) = ((8 + mantissa) << UInt64(exponent - 3)).addingReportingOverflow(width - 1)
        return overflow ? .max : lower
    }
}

/// `trace=PATH`: one JSON line per round trip and per conversation start
/// and end, each written with one write(2) on an O_APPEND descriptor so
/// lines from several vCPUs never interleave.
package final class TraceFile: Sendable {
    private let descriptor: Int32
    private let ops: OpTable

    /// Opens (and empties) the trace file.
    /// - Parameters:
    ///   - path: the file.
    ///   - ops: the op table, for op names.
    /// - Throws: `ControlSetupError` (the file's path and strerror's text) if it cannot be opened.
    package init(path: String, ops: OpTable) throws(ControlSetupError) {
        descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw ControlSetupError(message: "cannot open the trace file '\(path)': \(errorText())")
        }
        self.ops = ops
    }

    deinit { close(descriptor) }

    private func realtime() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return String(UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec))
    }

    private func site(_ site: TrapSite) -> String {
        "\"vcpu\":\(site.vcpu),\"hypercall\":\(site.number.rawValue),\"region\":\(site.regionAddress)"
    }

    func conversationStarted(at site: TrapSite) {
        emit("{\"time\":\(realtime()),\"event\":\"conversation-start\",\(self.site(site))}")
    }

    func conversationEnded(at site: TrapSite, failure: PortalError?) {
        var outcome = "\"outcome\":\"\(ConversationEnding(failure: failure).rawValue)\""
        if let failure { outcome += ",\"reason\":\(JSONValue.string("\(failure)").serialized)" }
        emit("{\"time\":\(realtime()),\"event\":\"conversation-end\",\(self.site(site)),\(outcome)}")
    }

    func roundTrip(_ trip: RoundTrip) {
        let op = ops.name(of: trip.op) ?? "op \(trip.op)"
        emit("{\"time\":\(realtime()),\"event\":\"round-trip\",\(site(trip.site)),\"op\":\"\(op)\",\"address\":\(trip.address),\"size\":\(trip.size),\"response\":\"\(trip.response)\",\"payload\":\(trip.payloadBytes),\"ns\":\(trip.nanoseconds)}")
    }

    private func emit(_ line: String) {
        var text = line + "\n"
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return }   // a full disk loses trace lines, never the guest
                offset += written
            }
        }
    }
}

/// The engine's recorder when the plugin keeps statistics and perhaps a trace.
package final class ControlRecorder: PortalRecorder {
    /// The counters behind `query-stats`.
    package let stats = PortalStats()
    /// The trace file, when `trace=PATH` was given.
    package let trace: TraceFile?

    /// Hypercall numbers whose conversations are announced as events, and where events go.
    private let watching = Lock<(numbers: Set<UInt32>, emit: (@Sendable (String, JSONValue) -> Void)?)>(([], nil))

    /// Creates the recorder.
    /// - Parameter trace: the trace file, if any.
    package init(trace: TraceFile?) { self.trace = trace }

    /// Where `PORTAL_HYPERCALL` events go (the control server's `emit`).
    /// - Parameter emit: takes an event name and its data; any thread.
    package func sendEvents(to emit: @escaping @Sendable (String, JSONValue) -> Void) {
        watching.withLock { $0.emit = emit }
    }

    /// Sends an event to every client of the control socket (nothing before
    /// the server is set up with ``sendEvents(to:)``).
    /// - Parameters:
    ///   - name: the QMP event name.
    ///   - data: the event's `data`.
    package func announce(_ name: String, _ data: JSONValue) {
        watching.withLock { $0.emit }?(name, data)
    }

    /// Starts or stops announcing the conversations hypercall `number` starts.
    /// - Parameters:
    ///   - number: the hypercall number (low 32 bits).
    ///   - enabled: whether to announce them.
    /// - Returns: every number watched now, in increasing order.
    package func watch(_ number: UInt32, enabled: Bool) -> [UInt32] {
        watching.withLock { state in
            if enabled { state.numbers.insert(number) } else { state.numbers.remove(number) }
            return state.numbers.sorted()
        }
    }

    package func conversationStarted(at site: TrapSite) {
        stats.conversationStarted()
        trace?.conversationStarted(at: site)
        let emit = watching.withLock { $0.numbers.contains(site.number.rawValue) ? $0.emit : nil }
        emit?("PORTAL_HYPERCALL", .object([
            ("hypercall", .int(Int64(site.number.rawValue))), ("vcpu", .int(Int64(site.vcpu))),
            ("region", .uint64(site.regionAddress)),
        ]))
    }

    package func conversationEnded(at site: TrapSite, failure: PortalError?) {
        stats.conversationEnded(failure: failure)
        trace?.conversationEnded(at: site, failure: failure)
    }

    package func roundTrip(_ roundTrip: RoundTrip) {
        stats.roundTrip(roundTrip)
        trace?.roundTrip(roundTrip)
    }
}
