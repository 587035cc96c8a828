import PortalControl
import Testing

/// The argument accessors every control command checks its arguments with.
struct CommandArgumentsTests {
    /// `enable` (watch-hypercall, watch-syscall) and `capture-output`
    /// (guest-exec): absent means the default, a bool is taken, anything
    /// else is refused with QEMU's words.
    @Test func optionalFlagIsItsDefaultItsValueOrRefused() throws {
        #expect(try CommandArguments([]).bool("enable", default: true) == true)
        #expect(try CommandArguments([("enable", .bool(false))]).bool("enable", default: true) == false)
        #expect(try CommandArguments([("capture-output", .bool(true))]).bool("capture-output", default: false) == true)
        #expect(throws: QMPError("Invalid parameter type for 'enable', expected: bool")) {
            try CommandArguments([("enable", .int(1))]).bool("enable", default: true)
        }
        #expect(throws: QMPError("Invalid parameter type for 'capture-output', expected: bool")) {
            try CommandArguments([("capture-output", .string("yes"))]).bool("capture-output", default: false)
        }
    }
}
