import Glibc
@testable import PortalEngine
import PortalTestSupport
import Testing

@Suite("Region header and the write rules")
struct CodecTests {
    func encoded(_ command: PortalCommand, layout: GuestLayout, payloadSize: Int = 16) -> [UInt8] {
        var buffer = [UInt8](repeating: 0xee, count: RegionHeader.size + payloadSize)
        let count = buffer.withUnsafeMutableBytes {
            command.encode(into: $0, payloadSize: payloadSize, layout: layout)
        }
        return Array(buffer[..<count])
    }

    @Test func littleEndianHeaderBytes() {
        let bytes = encoded(PortalCommand(op: 1, pid: 0x1234, address: 0x1122_3344_5566_7788, size: 8),
                            layout: .little64)
        #expect(bytes == [0x01, 0, 0, 0, 0x34, 0x12, 0, 0,
                          0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                          8, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func bigEndianHeaderBytes() {
        let bytes = encoded(PortalCommand(op: 3, pid: 7, address: 0xc000_1000, size: 5), layout: .big32)
        #expect(bytes == [0, 0, 0, 3, 0, 0, 0, 7,
                          0, 0, 0, 0, 0xc0, 0x00, 0x10, 0x00,
                          0, 0, 0, 0, 0, 0, 0, 5])
    }

    @Test func sizeIsClampedToTheRegion() {
        let bytes = encoded(PortalCommand(op: 1, size: 100), layout: .little64, payloadSize: 16)
        #expect(Array(bytes[16..<24]) == [16, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func negativeSizeBecomesZero() {
        let bytes = encoded(PortalCommand(op: 1, size: -5), layout: .little64)
        #expect(Array(bytes[16..<24]) == [0, 0, 0, 0, 0, 0, 0, 0])
    }

    /// COPY_BUF_GUEST's size is the buffer's total length: written as is,
    /// past the region, in either byte order; the payload is still cut.
    @Test func aTotalLengthIsNotClamped() {
        let payload = [UInt8](1...40)
        let little = encoded(PortalCommand(op: 40, size: 10_000, payload: .bytes(payload[...]),
                                           sizeIsTotalLength: true), layout: .little64, payloadSize: 16)
        #expect(Array(little[16..<24]) == [0x10, 0x27, 0, 0, 0, 0, 0, 0])
        #expect(Array(little[24...]) == Array(1...16))
        let big = encoded(PortalCommand(op: 40, size: 0x1_0000_0001, sizeIsTotalLength: true), layout: .big32)
        #expect(Array(big[16..<24]) == [0, 0, 0, 1, 0, 0, 0, 1])
        let clamped = encoded(PortalCommand(op: 40, size: 10_000, payload: .bytes(payload[...])), layout: .little64,
                              payloadSize: 16)
        #expect(Array(clamped[16..<24]) == [16, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func aNegativeTotalLengthBecomesZero() {
        let bytes = encoded(PortalCommand(op: 40, size: -5, sizeIsTotalLength: true), layout: .little64)
        #expect(Array(bytes[16..<24]) == [0, 0, 0, 0, 0, 0, 0, 0])
    }

    /// The flag lies in the padding after the payload: a command, moved on
    /// every round trip, is no bigger than before it.
    @Test func theFlagDoesNotGrowACommand() {
        #expect(MemoryLayout<PortalCommand>.size == 58)
        #expect(MemoryLayout<PortalCommand>.stride == 64)
    }

    @Test func addressIsMaskedToAThirtyTwoBitGuest() {
        let bytes = encoded(PortalCommand(op: 1, address: 0xffff_ffff_c012_3456), layout: .little32)
        #expect(Array(bytes[8..<16]) == [0x56, 0x34, 0x12, 0xc0, 0, 0, 0, 0])
    }

    @Test func pidDefaultsToTheCurrentTask() {
        for command in [PortalCommand(op: 1), PortalCommand(op: 1, pid: 0)] {
            #expect(Array(encoded(command, layout: .little64)[4..<8]) == [0xff, 0xff, 0xff, 0xff])
        }
        #expect(Array(encoded(PortalCommand(op: 1, pid: 0x1234), layout: .big64)[4..<8]) == [0, 0, 0x12, 0x34])
    }

    @Test func payloadLongerThanTheRegionIsCut() {
        let payload = [UInt8](1...40)
        let bytes = encoded(PortalCommand(op: 2, size: 40, payload: .bytes(payload[...])), layout: .little64,
                            payloadSize: 16)
        #expect(bytes.count == 24 + 16)
        #expect(Array(bytes[24...]) == Array(1...16))
        #expect(bytes[16] == 16)
    }

    @Test func emptyPayloadsWriteOnlyTheHeader() {
        let empty: [UInt8] = []
        for payload in [CommandPayload.bytes(empty[...]), .bytes([UInt8](1...4)[4...]),
                        .borrowed(UnsafeRawBufferPointer(start: nil, count: 0))] {
            #expect(encoded(PortalCommand(op: 2, size: 8, payload: payload), layout: .little64).count == 24)
        }
    }

    @Test func headerRoundTrips() {
        let header = RegionHeader(op: 0xf000_0001, pid: 42, address: 0xdead_beef, size: 77)
        for layout in [GuestLayout.little32, .little64, .big32, .big64] {
            var raw = [UInt8](repeating: 0, count: 24)
            raw.withUnsafeMutableBytes { header.encode(to: $0.baseAddress!, layout: layout) }
            let decoded = raw.withUnsafeBytes { RegionHeader(decoding: $0.baseAddress!, layout: layout) }
            #expect(decoded == header)
        }
    }

    @Test func responseCodesHaveNamesAndRange() {
        #expect(ResponseCode.readNumber.description == "READ_NUM")
        #expect(ResponseCode(rawValue: 0xf000_0007).isValid == false)
        #expect(ResponseCode(rawValue: 0xefff_ffff).isValid == false)
        #expect(ResponseCode.none.isValid)
        #expect(ResponseCode(rawValue: 0x1234).description == "0x1234")
    }

    @Test func hypercallNumbersMatchOnTheirLowThirtyTwoBits() {
        #expect(HypercallNumber(register: 0xffff_ffff_bebe_bebe) == .registerMemRegion)
        #expect(HypercallNumber.portalInterrupt.description == "0x7902")
    }
}

@Suite("Op tables")
struct OpTableTests {
    @Test func standardNumbers() {
        let table = OpTable.standard
        #expect(table.read == 1)
        #expect(table.write == 2)
        #expect(table.readString == 3)
        #expect(table.readTime == 17)
        #expect(table.number(of: "KALLSYMS_LOOKUP") == 33)
        #expect(table.number(of: "HYPER_OP_VFS_CLOSE") == 55)
        #expect(table.max == 56)
        #expect(table.name(of: 52) == "SET_SCOPE_ENABLED")
        #expect(table.name(of: 56) == nil)
    }

    @Test func parsesAShiftedTable() throws {
        let table = try OpTable(parsing: """
            # an older module
            HYPER_OP_NONE = 0
            READ
            write
            READ_STR = 3
            READ_TIME
            MAX = 5
            """)
        #expect(table.names == ["READ", "WRITE", "READ_STR", "READ_TIME"])
        #expect(table.readTime == 4)
        #expect(table.max == 5)
    }

    /// Each refusal names the line and what is wrong with it. `=` alone,
    /// found by the fuzzer, once crashed the parser.
    @Test(arguments: [
        ("READ\nWRITE = 3\n", 2, "WRITE = 3, but its position makes it 2"),
        ("READ\nREAD\n", 2, "READ is listed twice"),
        ("READ TIME\n", 1, "'READ TIME' is not an op name"),
        ("# nothing\n", 0, "the file lists no ops"),
        ("READ\n=\n", 2, "'=' is not an op name"),
        ("= 1\n", 1, "'= 1' is not an op name"),
        ("HYPER_OP_ = 1\n", 1, "'HYPER_OP_ = 1' is not an op name"),
        ("7UP\n", 1, "'7UP' is not an op name"),
        ("RÉAD\n", 1, "'RÉAD' is not an op name"),
        ("READ =\n", 1, "READ = '' is not a number"),
        ("MAX\n", 1, "MAX needs its number"),
        ("READ\nMAX = 3\n", 2, "MAX = 3, expected 2"),
        // Upper-cased first, these became FILE and STRASSE.
        ("ﬁle\n", 1, "'ﬁle' is not an op name"),
        ("READ\nstraße\n", 2, "'straße' is not an op name"),
        ("READ\r\nREAD_\u{0}\r\n", 2, "'READ_\u{0}' is not an op name"),
    ])
    func refusesABadTable(text: String, line: Int, message: String) {
        #expect(throws: OpTableError(line: line, message: message)) {
            try OpTable(parsing: text)
        }
    }
}

/// The op table file and the plugin arguments are text a user (or a script
/// generating them) hands to the emulator: no text may crash the parsers.
/// Deterministic pseudo-random texts built from the pieces that matter.
@Suite("Parsers against arbitrary text")
struct ParserRobustnessTests {
    static let pieces = ["=", "#", "\n", "\n", " ", "\t", "\r", "READ", "write", "HYPER_OP_", "NONE", "MAX",
                         "0", "1", "2", "56", "-1", "0x10", "99999999999", "_", "É", "\u{0}", "7UP", "A=B", "=="]

    func text(_ generator: inout SplitMix) -> String {
        (0..<Int.random(in: 0...24, using: &generator))
            .map { _ in Self.pieces.randomElement(using: &generator)! }
            .joined()
    }

    @Test func opTablesFromArbitraryText() {
        var generator = SplitMix(seed: 1)
        var accepted = 0
        for _ in 0..<20_000 {
            let input = text(&generator)
            do {
                let table = try OpTable(parsing: input)
                accepted += 1
                #expect(Set(table.names).count == table.names.count, "duplicates accepted from \(input.debugDescription)")
                #expect(table.names.allSatisfy { name in
                    name.first.map { $0.isLetter || $0 == "_" } == true
                        && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
                }, "a name that is not an identifier accepted from \(input.debugDescription)")
                #expect(table.max == UInt32(table.names.count + 1))
            } catch {
                let lines = input.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).count
                #expect((0...lines).contains(error.line), "line \(error.line) of \(input.debugDescription)")
            }
        }
        // The generator must reach both outcomes, or the test proves little.
        #expect(accepted > 100)
        #expect(accepted < 19_000)
    }

    @Test func argumentsFromArbitraryText() {
        var generator = SplitMix(seed: 2)
        let keys = PortalConfiguration.argumentNames + ["", "=", "log_level"]
        var accepted = 0
        for _ in 0..<20_000 {
            let arguments = (0..<Int.random(in: 0...3, using: &generator)).map { _ in
                keys.randomElement(using: &generator)! + (Bool.random(using: &generator) ? "=" : "") + text(&generator)
            }
            do {
                _ = try PortalConfiguration.parse(arguments) { _ in text(&generator) }
                accepted += 1
            } catch {
                #expect(arguments.contains(error.argument), "the refusal names '\(error.argument)', not one of \(arguments)")
                #expect(!error.message.isEmpty)
            }
        }
        #expect(accepted > 100)
    }
}

@Suite("Plugin arguments")
struct ConfigurationTests {
    func parse(_ arguments: [String], files: [String: String] = [:]) throws(ArgumentError) -> PortalConfiguration {
        try PortalConfiguration.parse(arguments) { path in
            guard let text = files[path] else { throw TestFileError() }
            return text
        }
    }

    struct TestFileError: Error, CustomStringConvertible {
        var description: String { "No such file or directory" }
    }

    @Test func defaults() throws {
        let configuration = try parse([])
        #expect(configuration.logLevel == .warn)
        #expect(configuration.regionSize == 4072)
        #expect(configuration.installBudget == 32)
        #expect(configuration.ops == .standard)
        #expect(configuration.directMemory)
    }

    @Test func everyArgument() throws {
        let configuration = try parse(
            ["log=debug", "log_file=/tmp/x.log", "region_size=0x3fe8", "install_budget=5", "ops=/t",
             "max_conversations=10", "max_interrupts=3", "stale_after=77", "control=/tmp/c.sock", "trace=/tmp/t.jsonl",
             "direct_memory=off"],
            files: ["/t": "READ\nWRITE\n"])
        #expect(configuration.logLevel == .debug)
        #expect(configuration.logFile == "/tmp/x.log")
        #expect(configuration.regionSize == 16360)
        #expect(configuration.installBudget == 5)
        #expect(configuration.ops.names == ["READ", "WRITE"])
        #expect(configuration.maxConversations == 10)
        #expect(configuration.maxInterrupts == 3)
        #expect(configuration.staleAfter == 77)
        #expect(configuration.controlPath == "/tmp/c.sock")
        #expect(configuration.tracePath == "/tmp/t.jsonl")
        #expect(!configuration.directMemory)
        #expect(try parse(["direct_memory=on"]).directMemory)
    }

    /// `load=` repeats and keeps its order; each `module_arg=` belongs to the
    /// `load=` before it, and several are joined with commas.
    @Test func analysisModules() throws {
        let configuration = try parse(
            ["load=/m/first.so", "module_arg=verbose", "log=info", "module_arg=limit=5", "load=second.so",
             "load=/m/third.so", "module_arg="])
        #expect(configuration.modules == [
            AnalysisModuleRequest(path: "/m/first.so", arguments: ["verbose", "limit=5"]),
            AnalysisModuleRequest(path: "second.so"),
            AnalysisModuleRequest(path: "/m/third.so", arguments: [""]),
        ])
        #expect(configuration.modules.map(\.argumentText) == ["verbose,limit=5", "", ""])
        #expect(throws: ArgumentError(argument: "module_arg=x", message:
            "an analysis module's argument must follow the load=PATH it belongs to")) {
            try parse(["log=info", "module_arg=x", "load=/m/first.so"])
        }
        #expect(throws: ArgumentError(argument: "load=", message: "expected the path of an analysis module")) {
            try parse(["load="])
        }
    }

    @Test func refusals() {
        #expect(throws: ArgumentError(argument: "colour=red", message:
            "unknown argument 'colour'; known: log, log_file, region_size, install_budget, ops, max_conversations, max_interrupts, stale_after, load, module_arg, control, trace, direct_memory")) {
            try parse(["colour=red"])
        }
        #expect(throws: ArgumentError(argument: "direct_memory=no", message: "expected on or off")) {
            try parse(["direct_memory=no"])
        }
        #expect(throws: ArgumentError(argument: "verbose", message: "expected key=value")) {
            try parse(["verbose"])
        }
        #expect(throws: ArgumentError(argument: "region_size=0", message:
            "expected a whole number from 1 to 1048576")) {
            try parse(["region_size=0"])
        }
        #expect(throws: ArgumentError(argument: "install_budget=lots", message:
            "expected a whole number from 1 to 1000000")) {
            try parse(["install_budget=lots"])
        }
        #expect(throws: ArgumentError(argument: "log=loud", message:
            "expected one of off, error, warn, info, debug")) {
            try parse(["log=loud"])
        }
        #expect(throws: ArgumentError(argument: "log=info", message: "'log' is given twice")) {
            try parse(["log=debug", "log=info"])
        }
        #expect(throws: ArgumentError(argument: "ops=/missing", message:
            "cannot read the op table: No such file or directory")) {
            try parse(["ops=/missing"])
        }
        #expect(throws: ArgumentError(argument: "ops=/bad", message:
            "bad op table: line 1: '1READ!' is not an op name")) {
            try parse(["ops=/bad"], files: ["/bad": "1READ!"])
        }
    }

    /// The plugin reads `ops=` with `readTextFile`: paths that are not
    /// small text files are refused with the reason, not read forever.
    @Test(arguments: [
        ("/dev/zero", "it is a character device, expected a regular file"),
        ("/", "it is a directory, expected a regular file"),
        ("/nonexistent/ops.txt", "No such file or directory"),
    ])
    func opTableFilesThatCannotBeRead(path: String, reason: String) {
        #expect(throws: ArgumentError(argument: "ops=\(path)", message: "cannot read the op table: \(reason)")) {
            try PortalConfiguration.parse(["ops=\(path)"]) { try PortalConfiguration.readTextFile($0) }
        }
    }

    @Test func opTableFromARealFile() throws {
        let path = "/tmp/portal-unit-ops-\(getpid()).txt"
        let text = "READ\nWRITE\nREAD_STR\nREAD_TIME = 4\n"
        let file = try #require(fopen(path, "w"))
        fputs(text, file)
        fclose(file)
        defer { unlink(path) }
        let configuration = try PortalConfiguration.parse(["ops=\(path)"]) { try PortalConfiguration.readTextFile($0) }
        #expect(configuration.ops.names == ["READ", "WRITE", "READ_STR", "READ_TIME"])
    }
}
