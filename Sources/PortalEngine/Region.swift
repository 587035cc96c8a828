/// The 24-byte header every region starts with (PROTOCOL.md §3), in guest
/// byte order on every architecture.
package struct RegionHeader: Equatable, Sendable {
    package static let size = 24

    package var op: UInt32
    package var pid: UInt32
    package var address: UInt64
    package var size: UInt64

    package init(op: UInt32, pid: UInt32, address: UInt64, size: UInt64) {
        self.op = op
        self.pid = pid
        self.address = address
        self.size = size
    }

    @inline(__always)
    package init(decoding bytes: UnsafeRawPointer, layout: GuestLayout) {
        op = layout.load(UInt32.self, from: bytes)
        pid = layout.load(UInt32.self, from: bytes + 4)
        address = layout.load(UInt64.self, from: bytes + 8)
        size = layout.load(UInt64.self, from: bytes + 16)
    }

    @inline(__always)
    package func encode(to bytes: UnsafeMutableRawPointer, layout: GuestLayout) {
        layout.store(op, to: bytes)
        layout.store(pid, to: bytes + 4)
        layout.store(address, to: bytes + 8)
        layout.store(size, to: bytes + 16)
    }
}

/// The bytes a command carries after the header.
public enum CommandPayload: @unchecked Sendable {
    /// No payload.
    case none
    /// Bytes owned by Swift code (kept alive while the command is pending).
    case bytes(ArraySlice<UInt8>)
    /// Bytes owned by the caller, valid until the command has been written.
    case borrowed(UnsafeRawBufferPointer)
}

/// A command for the guest module (host → guest): the region's header
/// fields and payload (PROTOCOL.md §3, §4).
public struct PortalCommand: Sendable {
    /// The op's number in the guest module's op table (``OpTable``).
    public var op: UInt32
    /// 0: the task that made the hypercall (CURRENT_PID_NUM). Not optional:
    /// the smaller command is moved and destroyed for less on every round trip.
    public var pid: UInt32
    /// The header's addr field; written masked to the guest's word width.
    public var address: UInt64
    /// Signed, as callers compute it; written clamped to 0 ... region size
    /// (negative becomes 0), or only to 0 ... when ``sizeIsTotalLength``.
    public var size: Int64
    /// The bytes after the header; written cut to the region's payload size.
    public var payload: CommandPayload
    /// Whether `size` is a total length the guest spreads over several
    /// commands rather than the bytes of this one, so it is written as is
    /// (only a negative size still becomes 0): COPY_BUF_GUEST allocates
    /// `size` bytes and the rest arrives by WRITE (PROTOCOL.md §6). Off by
    /// default: PROTOCOL.md §4 clamps every other op's size to the region.
    /// Declared last so it lies in the padding after `payload`: the command
    /// stays 64 bytes apart in memory, as without it.
    public var sizeIsTotalLength: Bool

    /// Makes a command.
    /// - Parameters:
    ///   - op: The op's number.
    ///   - pid: The task it is about; 0 for the one that made the hypercall.
    ///   - address: The addr field.
    ///   - size: The size field (clamped to 0 ... region size when written,
    ///     unless `sizeIsTotalLength`).
    ///   - payload: The bytes after the header.
    ///   - sizeIsTotalLength: Write `size` unclamped (only negative becomes 0),
    ///     for an op whose size is a total length (COPY_BUF_GUEST).
    public init(op: UInt32, pid: UInt32 = 0, address: UInt64 = 0, size: Int64 = 0,
                payload: CommandPayload = .none, sizeIsTotalLength: Bool = false) {
        self.op = op
        self.pid = pid
        self.address = address
        self.size = size
        self.payload = payload
        self.sizeIsTotalLength = sizeIsTotalLength
    }

    /// Writes the header and payload as the guest must see them, applying the
    /// write rules of PROTOCOL.md §4, and returns how many bytes to copy into
    /// the region. `buffer` holds at least a header and `payloadSize` bytes.
    @inline(__always)
    package func encode(into buffer: UnsafeMutableRawBufferPointer, payloadSize: Int,
                        layout: GuestLayout) -> Int {
        let nonNegativeSize = Swift.max(size, 0)
        let clampedSize = UInt64(sizeIsTotalLength ? nonNegativeSize : Swift.min(nonNegativeSize, Int64(payloadSize)))
        let effectivePID = pid == 0 ? currentProcessID : pid
        let header = RegionHeader(op: op, pid: effectivePID,
                                  address: address & layout.addressMask, size: clampedSize)
        header.encode(to: buffer.baseAddress!, layout: layout)
        let payloadStart = buffer.baseAddress! + RegionHeader.size
        let copied: Int
        switch payload {
        case .none:
            copied = 0
        case .bytes(let slice):
            copied = Swift.min(slice.count, payloadSize)
            if copied > 0 {
                slice.withUnsafeBytes { payloadStart.copyMemory(from: $0.baseAddress!, byteCount: copied) }
            }
        case .borrowed(let source):
            copied = Swift.min(source.count, payloadSize)
            if copied > 0 { payloadStart.copyMemory(from: source.baseAddress!, byteCount: copied) }
        }
        return RegionHeader.size + copied
    }
}

/// The guest's response to a command, in place: as it lies in the region.
///
/// `payload` points into the trapping vCPU's scratch buffer: it is valid
/// until the work sends its next command, so whoever keeps the bytes copies
/// them (``owned``). This is what lets a round trip move data without allocating.
public struct PortalResponse: @unchecked Sendable {
    /// The response code (the header's op field).
    public var code: ResponseCode
    /// The header's addr field as the guest left it.
    public var address: UInt64
    /// READ_OK / READ_PARTIAL: payload bytes; READ_NUM: the value.
    public var size: UInt64
    /// The payload bytes the response carries (none for codes without payload).
    public var payload: UnsafeRawBufferPointer

    /// Makes a response, as the engine reads one from the region (tests and
    /// step functions that replay responses make their own).
    /// - Parameters:
    ///   - code: The response code.
    ///   - address: The addr field.
    ///   - size: The size field.
    ///   - payload: The payload bytes, owned by the caller.
    public init(code: ResponseCode, address: UInt64 = 0, size: UInt64 = 0,
                payload: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        self.code = code
        self.address = address
        self.size = size
        self.payload = payload
    }

    /// An owned copy of the response, each response code its own case.
    public var owned: Owned {
        switch code {
        case .readOK: .readOK(Array(payload))
        case .readPartial: .readPartial(Array(payload))
        case .readFail: .readFail
        case .writeOK: .writeOK
        case .writeFail: .writeFail
        case .readNumber: .number(size)
        default: .none
        }
    }
}

extension PortalResponse {
    /// A response as an owned value: every response code is its own case, so a
    /// WRITE_FAIL can no longer pass for a READ_FAIL (the Python host cannot tell).
    public enum Owned: Equatable, Sendable {
        /// READ_OK: every byte asked for.
        case readOK([UInt8])
        /// READ_PARTIAL: the bytes before the first that could not be read.
        case readPartial([UInt8])
        /// READ_FAIL: nothing could be read.
        case readFail
        /// WRITE_OK: the write (or the op) succeeded.
        case writeOK
        /// WRITE_FAIL: the write failed, or the op is unknown to the guest.
        case writeFail
        /// READ_NUM: the op's number (the size field).
        case number(UInt64)
        /// RESP_NONE: the guest ran the command and had nothing to say.
        case none
    }
}
