/// The numbers of the portal protocol (PROTOCOL.md §2), as typed values.

/// A hypercall number. Guests on 64-bit targets may sign-extend a 32-bit
/// number into the register, so numbers are identified by their low 32 bits.
public struct HypercallNumber: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number: the register's low 32 bits.
    public var rawValue: UInt32

    /// Makes a hypercall number.
    /// - Parameter rawValue: The number.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The number as it arrived in the (possibly 64-bit) number register.
    /// - Parameter register: The number register, full width.
    public init(register: UInt64) { self.rawValue = UInt32(truncatingIfNeeded: register) }

    /// The number in hex (`0x1338`), as log lines print it.
    public var description: String { hex(rawValue) }

    /// arg1 = payload size of every region the guest will use.
    public static let registerMemRegion = HypercallNumber(rawValue: 0xbebe_bebe)
    /// arg1 = guest address of the u64 interrupt flag, arg2 = 0.
    public static let enablePortalInterrupt = HypercallNumber(rawValue: 0x7901)
    /// The conversation in which pending interrupt work runs.
    public static let portalInterrupt = HypercallNumber(rawValue: 0x7902)

    // Penguin's event numbers (PROTOCOL.md §2): the guest module makes
    // these hypercalls, and analysis code attaches work to them.

    /// The guest module finished initialising.
    public static let initModule = HypercallNumber(rawValue: 0x6408_400D)
    /// A syscall is entered.
    public static let syscallEnter = HypercallNumber(rawValue: 0x1338)
    /// A syscall returns.
    public static let syscallReturn = HypercallNumber(rawValue: 0x1339)
    /// A signal is delivered.
    public static let signalDeliver = HypercallNumber(rawValue: 0x133b)
    /// A process exits.
    public static let processExit = HypercallNumber(rawValue: 0x133c)
    /// A uprobe fires on entry.
    public static let uprobeEnter = HypercallNumber(rawValue: 0x6901)
    /// A uprobe fires on return.
    public static let uprobeReturn = HypercallNumber(rawValue: 0x6902)
    /// A kprobe fires on entry.
    public static let kprobeEnter = HypercallNumber(rawValue: 0x6903)
    /// A kprobe fires on return.
    public static let kprobeReturn = HypercallNumber(rawValue: 0x6904)
    /// An installed trampoline was hit.
    public static let trampolineHit = HypercallNumber(rawValue: 0x7903)
    /// hyperfs's requests.
    public static let hyperfsMagic = HypercallNumber(rawValue: 0x51ec_3692)

    /// The numbers the engine serves itself; work cannot be attached to them.
    public var isReservedByProtocol: Bool {
        self == .registerMemRegion || self == .enablePortalInterrupt || self == .portalInterrupt
    }
}

/// What the guest wrote into the header's op field after running a command.
public struct ResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The code as the guest wrote it.
    public var rawValue: UInt32

    /// Makes a response code (valid or not: see ``isValid``).
    /// - Parameter rawValue: The code.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// RESP_NONE: the command ran and has nothing to say.
    public static let none = ResponseCode(rawValue: 0xf000_0000)
    /// READ_OK: every byte asked for is in the payload.
    public static let readOK = ResponseCode(rawValue: 0xf000_0001)
    /// READ_FAIL: nothing could be read.
    public static let readFail = ResponseCode(rawValue: 0xf000_0002)
    /// READ_PARTIAL: the payload holds the bytes before the first unreadable one.
    public static let readPartial = ResponseCode(rawValue: 0xf000_0003)
    /// WRITE_OK: the write or the op succeeded.
    public static let writeOK = ResponseCode(rawValue: 0xf000_0004)
    /// WRITE_FAIL: the write failed or the op is unknown.
    public static let writeFail = ResponseCode(rawValue: 0xf000_0005)
    /// READ_NUM: the size field holds the op's number.
    public static let readNumber = ResponseCode(rawValue: 0xf000_0006)
    /// One past the last valid code.
    public static let max = ResponseCode(rawValue: 0xf000_0007)

    /// Whether it is one of the protocol's codes (NONE ... READ_NUM).
    public var isValid: Bool { rawValue >= Self.none.rawValue && rawValue < Self.max.rawValue }

    /// Whether the answer carries payload bytes (`size` of them).
    var carriesPayload: Bool { self == .readOK || self == .readPartial }

    /// The protocol's name of the code (`READ_OK`), nil for an invalid one.
    public var name: String? {
        switch self {
        case .none: "NONE"
        case .readOK: "READ_OK"
        case .readFail: "READ_FAIL"
        case .readPartial: "READ_PARTIAL"
        case .writeOK: "WRITE_OK"
        case .writeFail: "WRITE_FAIL"
        case .readNumber: "READ_NUM"
        default: nil
        }
    }

    /// The name, or the value in hex for an invalid code.
    public var description: String { name ?? hex(rawValue) }
}

/// `pid` of a command meaning "the task that made the hypercall".
public let currentProcessID: UInt32 = 0xffff_ffff

/// `0x` and lowercase hex digits, the form every log line, error message,
/// report and `portalctl` line uses for numbers and addresses: one function
/// for the whole package, so they all print an address the same way.
/// - Parameter value: The number.
/// - Returns: Its text, such as `0x7ffff`.
@inline(never)
package func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
