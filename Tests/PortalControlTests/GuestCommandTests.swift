@testable import PortalControl
import PortalEngine
import Testing

struct Base64Tests {
    @Test func knownTexts() {
        // RFC 4648 section 10.
        let pairs = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                     ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        for (plain, encoded) in pairs {
            #expect(base64Encode(Array(plain.utf8)) == encoded)
            #expect(base64Decode(encoded) == Array(plain.utf8))
        }
        #expect(base64Encode([0xff, 0xfe, 0x00]) == "//4A")
        #expect(base64Decode("Zm9vYg") == Array("foob".utf8))
    }

    @Test func refusals() {
        for text in ["Z", "Zm9v!", "Zg=a", "Zg===", "=Zg", "Zm9vY"] {
            #expect(base64Decode(text) == nil, "\(text)")
        }
    }

    @Test func everyLengthRoundTrips() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(base64Decode(base64Encode(bytes)) == bytes)
        }
    }
}

struct SyscallEventTests {
    /// A 64-bit little-endian struct syscall_event as the Linux guest module
    /// writes it: syscall `name` by pid 4242 at pc 0xffffffff81000000, args
    /// 0x1000 to 0x1005, of which `argc` are used.
    static func littleEndian64(_ name: String, argc: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 160)
        func put(_ value: UInt64, at offset: Int, width: Int = 8) {
            for index in 0..<width { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
        }
        for index in 0..<6 { put(0x1000 + UInt64(index), at: index * 8) }
        put(0xffff_ffff_8100_0000, at: 48)
        put(4242, at: 88)
        put(UInt64(argc), at: 104, width: 4)
        for (index, byte) in name.utf8.enumerated() { bytes[109 + index] = byte }
        return bytes
    }

    @Test func decodes64BitLittleEndian() {
        let bytes = Self.littleEndian64("execve", argc: 3)
        let event = SyscallEvent(bytes, layout: .little64)
        #expect(event == SyscallEvent(arguments: (0..<6).map { 0x1000 + UInt64($0) }, pc: 0xffff_ffff_8100_0000,
                                      pid: 4242, argc: 3, name: "execve"))
        #expect(SyscallEvent(Array(bytes.prefix(159)), layout: .little64) == nil)
    }

    /// A 32-bit big-endian one (144 bytes) whose name fills its 48 bytes with no NUL.
    @Test func decodes32BitBigEndianWithUnterminatedName() {
        var bytes = [UInt8](repeating: 0, count: 144)
        bytes[7] = 0x2a          // args[0] = 42
        bytes[48 ... 51] = [0x80, 0x00, 0x10, 0x00]
        bytes[79] = 7            // pid at 72
        bytes[91] = 1            // argc at 88
        for index in 93..<141 { bytes[index] = UInt8(ascii: "x") }
        let event = SyscallEvent(bytes, layout: .big32)
        #expect(event?.arguments.first == 42)
        #expect(event?.pc == 0x8000_1000)
        #expect(event?.pid == 7)
        #expect(event?.argc == 1)
        #expect(event?.name == String(repeating: "x", count: 48))
    }
}

struct GuestFileTableTests {
    @Test func handlesPositionsAndErrors() throws {
        let files = GuestFileTable()
        let handle = try files.open(path: "/etc/passwd", mode: .read)
        #expect(try files.file(handle, command: "guest-file-read").position == 0)
        files.advance(handle, by: 5)
        #expect(try files.file(handle, command: "guest-file-read").position == 5)
        try files.close(handle)
        #expect(throws: QMPError("guest-file-read: handle \(handle) is not open")) {
            try files.file(handle, command: "guest-file-read")
        }
        #expect(throws: QMPError("guest-file-close: handle \(handle) is not open")) { try files.close(handle) }
        let written = try files.open(path: "/tmp/x", mode: .write)
        #expect(files.reserveWrite(written, count: 10) == (0, true))
        #expect(files.reserveWrite(written, count: 3) == (10, false))
        #expect(try files.file(written, command: "w").position == 13)
    }

    @Test func limitsOpenFiles() throws {
        let files = GuestFileTable()
        for _ in 0..<GuestFileTable.limit { _ = try files.open(path: "/a", mode: .read) }
        #expect(throws: QMPError("guest-file-open: 256 files are open already; close some with guest-file-close")) {
            try files.open(path: "/a", mode: .read)
        }
    }
}
