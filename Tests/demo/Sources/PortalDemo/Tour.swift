import PortalEngine
import Portal
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The demonstration module (`load=libPortalDemo.so,module_arg=NAME`):
///
/// - `tour` is the host side of the bare-metal test guests' contract
///   (Tests/guests/contract.h): it attaches one Swift handler to
///   IGLOO_HYP_SYSCALL_ENTER that serves every event the guests raise, and
///   two named interrupts, and prints a report when the plugin unloads;
/// - `bench` attaches the Swift workloads of the benchmarks (bench/);
/// - `linux` is the host side of the Linux guest for `make demo`, and
///   `operations` the typed operations' end-to-end run in `make test-linux`
///   (``LinuxTour``).
///
/// Out of libportal.so so that production loads never carry it.
enum Demonstration {
    static let names = ["tour", "bench", "linux", "operations"]

    /// The tour of the current load and the logger its report goes to.
    static let active = Mutex<(tour: Tour, logger: PortalLogger)?>(nil)

    /// Whether the unload lists the guest's `execve`s (`linux`).
    static let reportsExecs = Atomic<Bool>(false)
}

/// Attaches the demonstration named by the module's argument.
/// - Parameter arguments: `tour`, `bench`, `linux` or `operations` (the module's `module_arg=`).
/// - Returns: 0, or 1 (logged) for an unknown name or no loaded engine.
@_cdecl("portal_analysis_init")
public func portalAnalysisInit(_ arguments: UnsafePointer<CChar>) -> Int32 {
    guard let engine = PortalPlugin.engine else { return 1 }
    let name = String(cString: arguments)
    do {
        switch name {
        case "tour":
            let tour = Tour(benchAddress: Tour.benchAddress(target: PortalPlugin.qemuTarget))
            try tour.attach(to: engine)
            Demonstration.active.withLock { $0 = (tour, engine.logger) }
        case "bench":
            try Bench.attach(to: engine)
        case "linux":
            try LinuxTour.attachDemo(to: engine)
            Demonstration.reportsExecs.store(true, ordering: .relaxed)
        case "operations":
            try LinuxTour.attachOperations(to: engine)
        default:
            engine.logger.error("demo: module_arg=\(name): no such demonstration; known: \(Demonstration.names.joined(separator: ", "))")
            return 1
        }
    } catch {
        engine.logger.error("demo: \(error)")
        return 1
    }
    return 0
}

/// The plugin is being unloaded: the tour prints its report, the Linux
/// demonstration the `execve`s it saw.
@_cdecl("portal_analysis_exit")
public func portalAnalysisExit() {
    if Demonstration.reportsExecs.load(ordering: .relaxed) { LinuxTour.reportExecs() }
    guard let (tour, logger) = Demonstration.active.withLock({ state -> (Tour, PortalLogger)? in
        defer { state = nil }
        return state
    }) else { return }
    for line in tour.report() { logger.write(line) }
}

/// The tour's host side: event numbers and expected answers from
/// Tests/guests/contract.h.
final class Tour: Sendable {
    enum Event {
        static let banner: UInt64 = 0x7e57_0001
        static let bannerShort: UInt64 = 0x7e57_0002
        static let bigWrite: UInt64 = 0x7e57_0003
        static let time: UInt64 = 0x7e57_0004
        static let partial: UInt64 = 0x7e57_0005
        static let faultString: UInt64 = 0x7e57_0006
        static let writeFault: UInt64 = 0x7e57_0007
        static let unsupportedOp: UInt64 = 0x7e57_0008
        static let queueInterrupts: UInt64 = 0x7e57_0009
        static let interruptPoke: UInt64 = 0x7e57_000a
        static let end: UInt64 = 0x7e57_000b
        static let bench: UInt64 = 0x7e57_0010
        static let readBench: UInt64 = 0x7e57_0011
    }

    enum Result {
        static let readFailed: UInt64 = 0x0bad_0001
        static let writeFailed: UInt64 = 0x0bad_0002
        static let protocolError: UInt64 = 0x0bad_00ee
        static let unknownEvent: UInt64 = 0x0bad_00ff
        static let end: UInt64 = 0x7e57_d09e
    }

    static let bannerPrefix = Array("portal-test-guest".utf8)
    static let bigLength = 10000
    static let partialAsk: Int64 = 256
    static let alphaValue: UInt32 = 0xa1fa_0001
    static let betaValue: UInt32 = 0xbe7a_0002
    static let unsupportedOp: UInt32 = 5

    /// The contract page's bench word, per QEMU target (contract.h).
    static func benchAddress(target: String?) -> UInt64 {
        switch target {
        case "riscv64": 0x8000_1000
        case "aarch64", "arm": 0x4010_1000
        default: 0x0010_1000
        }
    }

    static func bigByte(_ index: Int) -> UInt8 {
        let i = UInt32(index)
        return UInt8(truncatingIfNeeded: (i &* 7) ^ (i >> 8) ^ 0x5c)
    }

    static func fnv1a32(_ bytes: [UInt8]) -> UInt32 {
        bytes.reduce(0x811c_9dc5 as UInt32) { ($0 ^ UInt32($1)) &* 0x0100_0193 }
    }

    static func userByte(_ address: UInt64) -> UInt8 {
        UInt8(truncatingIfNeeded: address ^ (address >> 8) ^ 0xa5)
    }

    /// What the tour saw, for the report.
    struct Findings {
        var banner: String?
        var bigChecksum: UInt32?
        var clock: UInt64?
        var partialBytes: Int?
        var faultAnswers: [String] = []
        var mailbox: UInt64 = 0
        var mailboxSlot: UInt64 = 0
        /// The first `listKept` interrupts that ran, for the report.
        var interruptsRun: [String] = []
        var interruptsRunCount = 0
        var guestFailures: UInt64?
        var hostProblems: [String] = []
        var benchRoundTrips = 0
        var benchConversations = 0
        /// READ_BENCH: ns per 8-byte read and per 4 KiB read, and how many of each.
        var readBench: (eightByte: Double, page: Double, eightByteCount: Int, pageCount: Int)?
        var problemsNotKept = 0
    }

    let benchAddress: UInt64
    fileprivate let findings = Mutex(Findings())

    init(benchAddress: UInt64) { self.benchAddress = benchAddress }

    func attach(to engine: PortalEngine) throws(PortalError) {
        // BENCH runs as plain step work, the API without async overhead: it
        // is the round trip `make bench` holds against the floor plugin.
        // No capture lists in the handlers: a closure with one is not
        // inferred nonisolated(nonsending), and a Guest may not cross.
        let tour = self
        let events = WorkFactory.async { guest in try await tour.serve(guest) }
        let readOp = engine.ops.read
        try engine.attach(.syscallEnter, WorkFactory { [self] call in
            call.arg1 == Event.bench
                ? BenchReadWork(tour: self, address: benchAddress, count: call.arg2, readOp: readOp)
                : events.make(call)
        })
        for (name, value) in [("alpha", Self.alphaValue), ("beta", Self.betaValue)] {
            engine.registerInterrupt(name) { guest in
                let slot = tour.findings.withLock { state -> UInt64 in
                    defer { state.mailboxSlot += 1 }
                    return state.mailbox &+ 4 &* state.mailboxSlot
                }
                let reply = try await guest.send(PortalCommand(
                    op: guest.ops.write, address: slot, size: 4, payload: .bytes(guest.layout.bytes(of: value)[...])))
                guard reply == .writeOK else {
                    tour.problem("interrupt \(name): WRITE to the mailbox answered \(reply), expected WRITE_OK")
                    return
                }
                tour.findings.withLock {
                    if $0.interruptsRun.count < Self.listKept { $0.interruptsRun.append(name) }
                    $0.interruptsRunCount += 1
                }
            }
        }
    }

    func benchFinished(roundTrips: UInt64) {
        findings.withLock {
            $0.benchRoundTrips &+= Int(clamping: roundTrips)
            $0.benchConversations += 1
        }
    }

    /// Keeps the first problems for the report and counts the rest, so a
    /// guest raising bad events forever cannot grow the host's memory.
    func problem(_ text: String) {
        findings.withLock {
            if $0.hostProblems.count < Self.listKept {
                $0.hostProblems.append(text)
            } else {
                $0.problemsNotKept &+= 1
            }
        }
    }

    /// One decimal place, for the report.
    static func format(_ nanoseconds: Double) -> String {
        let tenths = Int((nanoseconds * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// How many problems and interrupt names the report lists: a guest
    /// raising events forever must not grow the host's memory.
    static let listKept = 32

    /// One event of the contract; the return value goes back to the guest.
    nonisolated(nonsending) private func serve(_ guest: Guest) async throws -> UInt64 {
        let argument = guest.call.arg2
        let ops = guest.ops
        switch guest.call.arg1 {
        case Event.banner, Event.bannerShort:
            let short = guest.call.arg1 == Event.bannerShort
            let reply = try await guest.send(PortalCommand(op: ops.readString, address: argument, size: short ? 8 : 0))
            switch reply {
            case .readOK(let bytes):
                // READ_OK carries `size` bytes: the string without its NUL.
                let expected = short ? Array("portal-t".utf8) : Self.bannerPrefix
                guard !bytes.contains(0), bytes.starts(with: expected), !short || bytes == expected else {
                    problem("banner: READ_STR answered \(bytes.count) bytes that do not start with \"\(String(decoding: expected, as: UTF8.self))\"")
                    return Result.protocolError
                }
                if !short {
                    findings.withLock { $0.banner = String(decoding: bytes, as: UTF8.self) }
                }
                return UInt64(bytes.count)
            case .readFail: return Result.readFailed
            default:
                problem("banner: READ_STR answered \(reply), expected READ_OK")
                return Result.protocolError
            }
        case Event.bigWrite:
            let pattern = (0..<Self.bigLength).map(Self.bigByte)
            do {
                try await guest.write(pattern, at: argument)
            } catch let error as GuestError where error.code == .writeFailed {
                return Result.writeFailed
            }
            let back: [UInt8]
            do {
                back = try await guest.readBytes(at: argument, count: pattern.count)
            } catch let error as GuestError where error.code == .readFailed {
                return Result.readFailed
            }
            let checksum = Self.fnv1a32(back)
            findings.withLock { $0.bigChecksum = checksum }
            if back != pattern { problem("big write: the bytes read back differ from the bytes written") }
            return UInt64(checksum)
        case Event.time:
            let clock = try await guest.readTime()
            findings.withLock { $0.clock = clock }
            return clock
        case Event.partial:
            let reply = try await guest.send(PortalCommand(op: ops.read, address: argument, size: Self.partialAsk))
            guard case .readPartial(let bytes) = reply else {
                if reply == .readFail { return Result.readFailed }
                problem("partial read: READ answered \(reply), expected READ_PARTIAL")
                return Result.protocolError
            }
            guard bytes.indices.allSatisfy({ bytes[$0] == Self.userByte(argument &+ UInt64($0)) }) else {
                problem("partial read: the \(bytes.count) bytes that arrived are not the guest's pattern")
                return Result.protocolError
            }
            findings.withLock { $0.partialBytes = bytes.count }
            return UInt64(bytes.count)
        case Event.faultString:
            return try await expectFailure(guest, "READ_STR in the faulting page",
                                           PortalCommand(op: ops.readString, address: argument), .readFail)
        case Event.writeFault:
            return try await expectFailure(guest, "WRITE to the faulting page", PortalCommand(
                op: ops.write, address: argument, size: 4, payload: .bytes([0x11, 0x22, 0x33, 0x44])), .writeFail)
        case Event.unsupportedOp:
            return try await expectFailure(guest, "op \(Self.unsupportedOp) (not implemented by the guest)",
                                           PortalCommand(op: Self.unsupportedOp), .writeFail)
        case Event.queueInterrupts:
            findings.withLock {
                $0.mailbox = argument
                $0.mailboxSlot = 0
            }
            do {
                try guest.queueInterrupt("alpha")
                try guest.queueInterrupt("beta")
            } catch {
                problem("queue interrupts: \(error)")
                return Result.protocolError
            }
            return 0
        case Event.interruptPoke:
            return UInt64(findings.withLock { $0.interruptsRunCount })
        case Event.end:
            findings.withLock { $0.guestFailures = argument }
            return Result.end
        case Event.readBench:
            return try await readBench(guest, count: Int(clamping: argument))
        default:
            problem("event \(String(guest.call.arg1, radix: 16)) is not in the contract")
            return Result.unknownEvent
        }
    }

    /// READ_BENCH (contract.h): `count` 8-byte reads of the bench word, then
    /// max(count / 64, 1) reads of the 4 KiB contract page, through the
    /// Guest API (direct memory first, unless direct_memory=off), each loop
    /// timed on the host's monotonic clock.
    nonisolated(nonsending) private func readBench(_ guest: Guest, count: Int) async throws -> UInt64 {
        guard count > 0 else { return 0 }
        let pages = max(count / 64, 1)
        var last: UInt64 = 0
        let started = Self.nanoseconds()
        for _ in 0..<count { last = try await guest.read(UInt64.self, at: benchAddress) }
        let eightDone = Self.nanoseconds()
        for _ in 0..<pages {
            let page = try await guest.readBytes(at: benchAddress, count: 4096)
            guard page.count == 4096, guest.layout.load(UInt64.self, from: page) == Tour.benchWord else {
                problem("read bench: the 4 KiB contract page read back without the bench word")
                return Result.protocolError
            }
        }
        let pagesDone = Self.nanoseconds()
        guard last == Tour.benchWord else {
            problem("read bench: the 8-byte read returned 0x\(String(last, radix: 16)), expected the bench word")
            return Result.protocolError
        }
        findings.withLock {
            $0.readBench = (Double(eightDone - started) / Double(count), Double(pagesDone - eightDone) / Double(pages),
                            count, pages)
        }
        return last
    }

    /// The contract page's first word (contract.h, CONTRACT_BENCH_WORD).
    static let benchWord: UInt64 = 0x8877_6655_4433_2211

    static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    nonisolated(nonsending) private func expectFailure(_ guest: Guest, _ what: String, _ command: PortalCommand,
                               _ expected: PortalResponse.Owned) async throws -> UInt64 {
        let reply = try await guest.send(command)
        guard reply == expected else {
            problem("\(what): answered \(reply), expected \(expected)")
            return Result.protocolError
        }
        let answer = "\(what): \(expected == .readFail ? "READ_FAIL" : "WRITE_FAIL")"
        findings.withLock { if !$0.faultAnswers.contains(answer) { $0.faultAnswers.append(answer) } }
        return expected == .readFail ? Result.readFailed : Result.writeFailed
    }

    /// A short report a person can read; the last line says PASS or FAIL.
    func report() -> [String] {
        let seen = findings.withLock { $0 }
        var lines: [String] = []
        func add(_ text: String) { lines.append("tour: \(text)") }
        if seen.benchRoundTrips > 0 { add("served \(seen.benchRoundTrips) READ round trips for the bench loop") }
        if let bench = seen.readBench {
            add("read bench: \(bench.eightByteCount) 8-byte reads at \(Self.format(bench.eightByte)) ns each, \(bench.pageCount) 4 KiB reads at \(Self.format(bench.page)) ns each")
        }
        if let banner = seen.banner { add("the guest's banner reads \"\(banner)\" (\(banner.utf8.count) bytes)") }
        if let checksum = seen.bigChecksum {
            add("wrote \(Self.bigLength) bytes into the guest and read them back, region by region (FNV-1a 0x\(String(checksum, radix: 16)))")
        }
        if let clock = seen.clock { add("the guest clock read \(clock) ns") }
        if let partial = seen.partialBytes {
            add("a read running into the guest's faulting page returned \(partial) of \(Self.partialAsk) bytes (READ_PARTIAL)")
        }
        for answer in seen.faultAnswers { add(answer) }
        if !seen.interruptsRun.isEmpty {
            let more = seen.interruptsRunCount - seen.interruptsRun.count
            add("interrupts \(seen.interruptsRun.joined(separator: ", "))\(more > 0 ? " and \(more) more" : "") ran in queue order inside the guest's PORTAL_INTERRUPT conversation")
        }
        for problem in seen.hostProblems { add("PROBLEM: \(problem)") }
        if seen.problemsNotKept > 0 { add("PROBLEM: \(seen.problemsNotKept) more problems not listed") }
        if let failures = seen.guestFailures { add("the guest counted \(failures) failed checks") }
        let passed = seen.hostProblems.isEmpty
            && (seen.guestFailures == 0
                || (seen.guestFailures == nil && (seen.benchConversations > 0 || seen.readBench != nil)))
        add(passed ? "PASS" : "FAIL")
        return lines
    }
}

/// The tour's BENCH event: `count` 8-byte READs of the contract page, as a
/// Swift step function (ConversationWork) rather than an async handler.
/// Returns the last value read.
final class BenchReadWork: ConversationWork {
    private let tour: Tour
    private let address: UInt64
    private let count: UInt64
    private let readOp: UInt32
    private var done: UInt64 = 0
    private var last: UInt64 = 0

    init(tour: Tour, address: UInt64, count: UInt64, readOp: UInt32) {
        self.tour = tour
        self.address = address
        self.count = count
        self.readOp = readOp
    }

    func start(_ conversation: Conversation) -> WorkStep { next() }

    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        guard response.code == .readOK, response.payload.count == 8 else {
            tour.problem("bench: READ answered \(response.code) with \(response.payload.count) bytes, expected READ_OK with 8")
            return .finished(Tour.Result.protocolError)
        }
        last = conversation.layout.load(UInt64.self, from: response.payload.baseAddress!)
        done += 1
        return next()
    }

    func cancel(_ conversation: Conversation, because reason: PortalError) {}

    private func next() -> WorkStep {
        guard done < count else {
            tour.benchFinished(roundTrips: done)
            return .finished(last)
        }
        return .command(PortalCommand(op: readOp, address: address, size: 8))
    }
}

/// `demo=bench`: Swift workloads for the benchmarks (bench/), attached to
/// IGLOO_HYP_SYSCALL_ENTER. arg1 selects the workload; arg2 is the guest
/// address of its parameters, two u64 in guest order: {count, address}.
enum Bench {
    /// `count` 8-byte READs of `address`; returns the last value read.
    static let readLoop: UInt64 = 0xbe0c_0001
    /// Reads `count` bytes at `address` through the region; returns `count`.
    static let bulkRead: UInt64 = 0xbe0c_0002
    /// Writes `count` bytes (0, 1, 2, ... mod 256) at `address`; returns `count`.
    static let bulkWrite: UInt64 = 0xbe0c_0003

    /// Bulk transfers come from guest memory: at most 4 MiB (the benchmark
    /// moves 1 MiB), so a guest cannot make the host allocate, or spend
    /// seconds, without bound.
    static let maxBulkLength: UInt64 = 4 << 20

    static func bulkLength(_ count: UInt64) throws -> Int {
        guard count <= maxBulkLength else { throw BulkTooLarge(count: count) }
        return Int(count)
    }

    static func attach(to engine: PortalEngine) throws(PortalError) {
        try engine.attach(.syscallEnter) { guest in
            let count = try await guest.read(UInt64.self, at: guest.call.arg2)
            let address = try await guest.read(UInt64.self, at: guest.call.arg2 &+ 8)
            switch guest.call.arg1 {
            case readLoop:
                var last: UInt64 = 0
                for _ in 0..<count { last = try await guest.read(UInt64.self, at: address) }
                return last
            case bulkRead:
                var received: UInt64 = 0
                try await guest.readChunks(at: address, count: try bulkLength(count)) { received += UInt64($0.count) }
                return received
            case bulkWrite:
                let length = try bulkLength(count)
                let pattern = [UInt8](unsafeUninitializedCapacity: length) { bytes, initialized in
                    for index in 0..<length { bytes[index] = UInt8(truncatingIfNeeded: index) }
                    initialized = length
                }
                try await guest.write(pattern, at: address)
                return count
            default:
                throw UnknownWorkload(selector: guest.call.arg1)
            }
        }
    }
}

struct BulkTooLarge: Error, CustomStringConvertible {
    let count: UInt64
    var description: String { "a bulk transfer of \(count) bytes was asked for, at most \(Bench.maxBulkLength) are served" }
}

struct UnknownWorkload: Error, CustomStringConvertible {
    let selector: UInt64
    var description: String {
        "arg1 0x\(String(selector, radix: 16)) selects no bench workload (0xbe0c0001 to 0xbe0c0003)"
    }
}
