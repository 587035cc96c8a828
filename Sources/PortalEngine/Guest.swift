/// The guest as a Swift handler sees it: each method is one or more round
/// trips through the conversation's region. The counterpart of the Python
/// host's generators and `plugins.mem`.
///
/// Every method must be awaited directly by the handler (one at a time):
/// the handler runs on the trapping vCPU's thread between two traps. The
/// methods are `nonisolated(nonsending)`: they run where their caller runs,
/// so awaiting one costs no executor switch (a switch to the task's preferred
/// executor takes a lock in the concurrency runtime: an eighth of a round trip).
///
/// Not `Sendable`: a `Guest` belongs to its handler's task, so handing it to
/// another task (`async let`, a task group, `Task { }`) is a compile error
/// rather than two operations racing for the one region.
///
/// **Direct memory first.** Where the front end offers the emulator's own
/// view of the trapping vCPU's virtual memory (QEMU) and `direct_memory` is
/// not `off`, the memory operations (`readChunks`, `readBytes`,
/// `readAvailableBytes`, `readCString`, `readString`, `read`, `readPointer`,
/// `write`, `writePointer`) try that view first and need no round trip for
/// the bytes it holds. It is the same address space the guest module would
/// use: READ and WRITE act on the task current in the guest when it serves
/// the command, which is the trapping task (PROTOCOL.md §6). The rule:
/// - reads take, page by page (4 KiB), what the view holds; from the first
///   page it cannot read (unmapped, swapped out) the rest goes to the guest
///   as portal READs (READ_STR for strings), silently, so a page the guest
///   can fault in still arrives and a failure is still the guest's answer;
/// - writes the same with WRITE. The view writes as a debugger does: page
///   protections are not checked, so a page mapped read-only in the guest
///   is written where the guest module's WRITE would answer WRITE_FAIL (as
///   Penguin's host does);
/// - `send`, `withResponse(to:)` and the queries always go to the guest.
/// The view is used only while the handler runs inside its conversation's
/// trap, on that vCPU's thread, which is where guest operations run.
public struct Guest {
    let work: AsyncWork
    /// The conversation this handler runs in.
    package let conversation: Conversation

    init(work: AsyncWork, conversation: Conversation) {
        self.work = work
        self.conversation = conversation
    }

    /// The hypercall that started this conversation.
    public var call: Hypercall { conversation.call }
    /// The guest's word width and byte order.
    public var layout: GuestLayout { conversation.layout }
    /// The guest module's op table.
    public var ops: OpTable { conversation.ops }
    /// Payload bytes one command or response can carry.
    public var regionSize: Int { conversation.regionSize }

    /// The page a string read never crosses in one command: the region's own
    /// page size when the guest registered PAGE_SIZE - 24, else 4 KiB.
    public var pageSize: Int {
        let page = regionSize + RegionHeader.size
        return page & (page - 1) == 0 ? page : 4096
    }

    // MARK: Raw commands

    /// Sends any command and returns the guest's response as an owned value.
    /// - Parameter command: The command, op numbers from ``ops``.
    /// - Returns: The response, every response code its own case.
    /// - Throws: ``PortalError`` when the conversation has ended, ``GuestError``
    ///   with ``GuestError/Code/concurrentOperation`` when another operation is
    ///   waiting.
    nonisolated(nonsending) public func send(_ command: PortalCommand) async throws -> PortalResponse.Owned {
        try await work.exchange(command).owned
    }

    /// Sends any command and hands the guest's response to `body` in place,
    /// without a copy: what decoders of typed operations build on.
    /// - Parameters:
    ///   - command: The command, op numbers from ``ops``.
    ///   - body: Reads the response; its payload is valid only inside `body`.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws; ``PortalError`` when the conversation has
    ///   ended, ``GuestError`` with ``GuestError/Code/concurrentOperation``
    ///   when another operation is waiting.
    nonisolated(nonsending) public func withResponse<R>(to command: PortalCommand,
                              _ body: (PortalResponse) throws -> R) async throws -> R {
        try body(try await work.exchange(command))
    }

    private func op(_ number: UInt32, _ name: String) throws -> UInt32 {
        guard number != 0 else { throw GuestError.opMissing(name) }
        return number
    }

    /// Looks an op up by name in the op table in use.
    /// - Parameter name: The op's name (`READ_STR`, `HYPER_OP_READ_STR`, any case).
    /// - Returns: The op's number.
    /// - Throws: ``GuestError`` with ``GuestError/Code/opMissing`` when the table has no such op.
    public func op(named name: String) throws(GuestError) -> UInt32 {
        guard let number = ops.number(of: name) else { throw GuestError.opMissing(name) }
        return number
    }

    // MARK: Direct memory

    /// The granule of direct accesses: no direct read or write crosses a
    /// 4 KiB boundary once the first attempt failed, so the bytes before an
    /// unreadable page are still taken directly (4 KiB is the smallest page
    /// of the supported guests).
    static let directPage = 4096

    /// Bytes one direct read hands to `readChunks`' consumer at a time.
    static let directChunk = 64 * 1024

    /// The trapping vCPU's own view of guest memory, when the front end
    /// offers one, `direct_memory` is on and this handler runs inside its
    /// conversation's trap; nil otherwise. `ended` is checked first: a job
    /// of an ended conversation may run on another thread, where the view
    /// must not be touched.
    private var directMemory: GuestMemory? {
        work.ended ? nil : conversation.directMemory
    }

    /// Reads `buffer.count` bytes at `address` through `memory`: all at
    /// once, else page by page up to the first page it cannot read.
    /// - Returns: how many bytes at the start of `buffer` were read.
    static func readDirect(_ memory: GuestMemory, at address: UInt64, mask: UInt64,
                           into buffer: UnsafeMutableRawBufferPointer) -> Int {
        if memory.read(address & mask, into: buffer) { return buffer.count }
        // Within one page the attempt above was the only one to make.
        guard Int(address % UInt64(directPage)) + buffer.count > directPage else { return 0 }
        var done = 0
        while done < buffer.count {
            let next = address &+ UInt64(done)
            let piece = min(buffer.count - done, directPage - Int(next % UInt64(directPage)))
            guard memory.read(next & mask, into: UnsafeMutableRawBufferPointer(
                rebasing: buffer[done..<done + piece])) else { break }
            done += piece
        }
        return done
    }

    /// Writes `bytes` at `address` through `memory`, page by page, up to
    /// the first page it cannot write.
    /// - Returns: how many bytes at the start of `bytes` were written.
    static func writeDirect(_ memory: GuestMemory, at address: UInt64, mask: UInt64,
                            from bytes: UnsafeRawBufferPointer) -> Int {
        var done = 0
        while done < bytes.count {
            let next = address &+ UInt64(done)
            let piece = min(bytes.count - done, directPage - Int(next % UInt64(directPage)))
            guard memory.write(next & mask, from: UnsafeRawBufferPointer(rebasing: bytes[done..<done + piece]))
            else { break }
            done += piece
        }
        return done
    }

    // MARK: Memory

    /// Reads `count` bytes at `address` in region-sized chunks, handing
    /// each chunk's bytes to `consume` in order. Direct memory first (see
    /// `Guest`): the bytes the emulator's view holds need no round trip;
    /// READs carry the rest.
    /// - Parameters:
    ///   - address: The guest address of the first byte.
    ///   - count: How many bytes to read.
    ///   - consume: Takes each chunk's bytes, valid only during the call.
    /// - Throws: ``GuestError`` with ``GuestError/Code/readFailed`` at the
    ///   first short or failed chunk, after handing over the bytes that did
    ///   arrive (nothing is zero-filled); ``PortalError`` when the
    ///   conversation has ended.
    nonisolated(nonsending) public func readChunks(at address: UInt64, count: Int,
                           _ consume: (UnsafeRawBufferPointer) -> Void) async throws {
        var done = 0
        if count > 0, let direct = directMemory {
            let mask = layout.addressMask
            done = withUnsafeTemporaryAllocation(byteCount: min(count, Self.directChunk), alignment: 16) { buffer in
                var taken = 0
                while taken < count {
                    let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(count - taken, buffer.count)])
                    let got = Self.readDirect(direct, at: address &+ UInt64(taken), mask: mask, into: piece)
                    if got > 0 { consume(UnsafeRawBufferPointer(rebasing: piece[..<got])) }
                    taken += got
                    if got < piece.count { break }
                }
                return taken
            }
            if done == count { return }
        }
        let read = try op(ops.read, "READ")
        while done < count {
            let chunk = min(count - done, regionSize)
            let chunkAddress = (address &+ UInt64(done)) & layout.addressMask
            let answer = try await work.exchange(
                PortalCommand(op: read, address: chunkAddress, size: Int64(chunk)))
            let got = answer.code.carriesPayload ? min(answer.payload.count, chunk) : 0
            if got > 0 { consume(UnsafeRawBufferPointer(rebasing: answer.payload.prefix(got))) }
            done += got
            guard answer.code == .readOK, got == chunk else {
                throw readError(op: read, answer.code, address: address, count: count, bytesRead: done)
            }
        }
    }

    /// Reads `count` bytes at `address`.
    /// - Parameters:
    ///   - address: The guest address of the first byte.
    ///   - count: How many bytes to read.
    /// - Returns: Exactly `count` bytes.
    /// - Throws: ``GuestError`` with ``GuestError/Code/readFailed`` when any
    ///   could not be read; ``PortalError`` when the conversation has ended.
    nonisolated(nonsending) public func readBytes(at address: UInt64, count: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        // `count` often comes from guest data: reserve no more than a
        // megabyte up front, so a wild length fails at the first chunk the
        // guest cannot serve instead of in the allocator.
        bytes.reserveCapacity(min(max(count, 0), 1 << 20))
        try await readChunks(at: address, count: count) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// Reads up to `count` bytes at `address`, stopping at the first short
    /// or failed chunk.
    /// - Parameters:
    ///   - address: The guest address of the first byte.
    ///   - count: How many bytes to read at most.
    /// - Returns: The bytes that could be read, from `address` on.
    /// - Throws: ``GuestError`` when the op table has no READ or the guest
    ///   sends a response a read never gets; ``PortalError`` when the
    ///   conversation has ended.
    nonisolated(nonsending) public func readAvailableBytes(at address: UInt64, count: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        do {
            try await readChunks(at: address, count: count) { bytes.append(contentsOf: $0) }
        } catch let error as GuestError where error.code == .readFailed {
            // `bytes` holds what arrived before the failure.
        }
        return bytes
    }

    /// Writes `bytes` at `address` in region-sized chunks. Direct memory
    /// first (see `Guest`): WRITEs carry what the emulator's view could not
    /// take.
    /// - Parameters:
    ///   - bytes: What to write.
    ///   - address: The guest address of the first byte.
    /// - Throws: ``GuestError`` with ``GuestError/Code/writeFailed`` saying
    ///   how many bytes were written when the guest refuses a chunk;
    ///   ``PortalError`` when the conversation has ended.
    nonisolated(nonsending) public func write(_ bytes: [UInt8], at address: UInt64) async throws {
        var done = 0
        if !bytes.isEmpty, let direct = directMemory {
            done = bytes.withUnsafeBytes { Self.writeDirect(direct, at: address, mask: layout.addressMask, from: $0) }
            if done == bytes.count { return }
        }
        let write = try op(ops.write, "WRITE")
        while done < bytes.count {
            let chunk = min(bytes.count - done, regionSize)
            let answer = try await work.exchange(PortalCommand(
                op: write, address: (address &+ UInt64(done)) & layout.addressMask,
                size: Int64(chunk), payload: .bytes(bytes[done..<done + chunk])))
            switch answer.code {
            case .writeOK: done += chunk
            case .writeFail:
                throw GuestError.writeFailed(op: write, address: address, count: bytes.count, bytesWritten: done)
            default: throw GuestError.unexpectedResponse(op: write, response: answer.code)
            }
        }
    }

    /// Reads a NUL-terminated string. Each command stays within one guest
    /// page, so a string that ends before an unmapped page is still read.
    /// Direct memory first (see `Guest`): page by page from the emulator's
    /// view, READ_STR from the first page it cannot read.
    /// - Parameters:
    ///   - address: The guest address of the first byte.
    ///   - maxLength: The most bytes to read; nil for one region, as the
    ///     Python host.
    /// - Returns: The string's bytes without the NUL.
    /// - Throws: ``GuestError`` with ``GuestError/Code/readFailed`` when a
    ///   page of it cannot be read; ``PortalError`` when the conversation has ended.
    nonisolated(nonsending) public func readCString(at address: UInt64, maxLength: Int? = nil) async throws -> [UInt8] {
        let limit = maxLength ?? regionSize
        var result: [UInt8] = []
        if limit > 0, let direct = directMemory {
            let mask = layout.addressMask
            let complete = withUnsafeTemporaryAllocation(byteCount: Self.directPage, alignment: 16) { page -> Bool in
                while result.count < limit {
                    let next = address &+ UInt64(result.count)
                    let toPageEnd = Self.directPage - Int(next % UInt64(Self.directPage))
                    let chunk = UnsafeMutableRawBufferPointer(rebasing: page[..<min(toPageEnd, limit - result.count)])
                    guard direct.read(next & mask, into: chunk) else { return false }
                    if let end = chunk.firstIndex(of: 0) {
                        result.append(contentsOf: chunk[..<end])
                        return true
                    }
                    result.append(contentsOf: chunk)
                }
                return true
            }
            if complete { return result }
        }
        let readString = try op(ops.readString, "READ_STR")
        while result.count < limit {
            let next = (address &+ UInt64(result.count)) & layout.addressMask
            let toPageEnd = pageSize - Int(next % UInt64(pageSize))
            let chunk = min(toPageEnd, limit - result.count, regionSize - 1)
            guard chunk > 0 else { break }
            let answer = try await work.exchange(
                PortalCommand(op: readString, address: next, size: Int64(chunk)))
            guard answer.code == .readOK else {
                throw readError(op: readString, answer.code, address: address, count: limit,
                                bytesRead: result.count)
            }
            let length = min(Int(clamping: answer.size), chunk, answer.payload.count)
            result.append(contentsOf: answer.payload.prefix(length))
            if length < chunk { break }
        }
        return result
    }

    /// Reads a NUL-terminated string as ``readCString(at:maxLength:)`` does
    /// and decodes it as UTF-8, repairing invalid sequences.
    /// - Parameters:
    ///   - address: The guest address of the first byte.
    ///   - maxLength: The most bytes to read; nil for one region.
    /// - Returns: The decoded string.
    /// - Throws: What ``readCString(at:maxLength:)`` throws.
    nonisolated(nonsending) public func readString(at address: UInt64, maxLength: Int? = nil) async throws -> String {
        String(decoding: try await readCString(at: address, maxLength: maxLength), as: UTF8.self)
    }

    /// Reads an integer stored in guest byte order, with no allocation.
    /// Direct memory first (see `Guest`): one READ only when the emulator's
    /// view cannot read all of it.
    /// - Parameters:
    ///   - type: The integer type: its size is how many bytes are read.
    ///   - address: The guest address of its first byte.
    /// - Returns: The integer.
    /// - Throws: ``GuestError`` with ``GuestError/Code/readFailed`` when it
    ///   cannot be read; ``PortalError`` when the conversation has ended.
    nonisolated(nonsending) public func read<T: FixedWidthInteger>(_ type: T.Type, at address: UInt64) async throws -> T {
        let size = MemoryLayout<T>.size
        if let direct = directMemory {
            let value = withUnsafeTemporaryAllocation(byteCount: size, alignment: MemoryLayout<T>.alignment) { bytes in
                direct.read(address & layout.addressMask, into: bytes)
                    ? layout.load(T.self, from: bytes.baseAddress!) : nil
            }
            if let value { return value }
        }
        let read = try op(ops.read, "READ")
        let answer = try await work.exchange(PortalCommand(op: read, address: address, size: Int64(size)))
        guard answer.code == .readOK, answer.payload.count == size else {
            throw readError(op: read, answer.code, address: address, count: size,
                            bytesRead: answer.code.carriesPayload ? answer.payload.count : 0)
        }
        return layout.load(T.self, from: answer.payload.baseAddress!)
    }

    /// A read that stopped short: `readFailed` for the answers a read can
    /// have, `unexpectedResponse` for any other.
    private func readError(op: UInt32, _ answer: ResponseCode, address: UInt64, count: Int,
                           bytesRead: Int) -> GuestError {
        switch answer {
        case .readOK, .readPartial, .readFail:
            .readFailed(op: op, address: address, count: count, bytesRead: bytesRead, response: answer)
        default:
            .unexpectedResponse(op: op, response: answer)
        }
    }

    /// Writes an integer in guest byte order.
    /// - Parameters:
    ///   - value: The integer: its size is how many bytes are written.
    ///   - address: The guest address of its first byte.
    /// - Throws: ``GuestError`` with ``GuestError/Code/writeFailed`` when it
    ///   cannot be written; ``PortalError`` when the conversation has ended.
    nonisolated(nonsending) public func write<T: FixedWidthInteger>(_ value: T, at address: UInt64) async throws {
        try await write(layout.bytes(of: value), at: address)
    }

    /// Reads a pointer: 4 or 8 bytes, as wide as the guest's words.
    /// - Parameter address: The guest address of the pointer.
    /// - Returns: The pointer's value.
    /// - Throws: What ``read(_:at:)`` throws.
    nonisolated(nonsending) public func readPointer(at address: UInt64) async throws -> UInt64 {
        layout.wordBits == 64
            ? try await read(UInt64.self, at: address)
            : UInt64(try await read(UInt32.self, at: address))
    }

    /// Writes a pointer: 4 or 8 bytes, as wide as the guest's words.
    /// - Parameters:
    ///   - value: The pointer's value (cut to 32 bits on a 32-bit guest).
    ///   - address: The guest address to write it at.
    /// - Throws: What the integer `write(_:at:)` throws.
    nonisolated(nonsending) public func writePointer(_ value: UInt64, at address: UInt64) async throws {
        if layout.wordBits == 64 {
            try await write(value, at: address)
        } else {
            try await write(UInt32(truncatingIfNeeded: value), at: address)
        }
    }

    // MARK: Queries

    /// Runs an op that answers READ_NUM (READ_TIME, KALLSYMS_LOOKUP,
    /// OSI_PROC_PTREGS, ...).
    /// - Parameters:
    ///   - op: The op's number.
    ///   - pid: The task it is about; 0 for the current one.
    ///   - address: The command's addr field.
    ///   - size: The command's size field.
    ///   - payload: Bytes the op reads from the region (a name, ...).
    /// - Returns: The number the guest answered.
    /// - Throws: ``GuestError`` with ``GuestError/Code/numberFailed`` when the
    ///   guest answers anything but READ_NUM; ``PortalError`` when the
    ///   conversation has ended.
    nonisolated(nonsending) public func readNumber(op: UInt32, pid: UInt32 = 0, address: UInt64 = 0, size: Int64 = 0,
                           payload: [UInt8] = []) async throws -> UInt64 {
        let answer = try await work.exchange(PortalCommand(
            op: op, pid: pid, address: address, size: size,
            payload: payload.isEmpty ? .none : .bytes(payload[...])))
        guard answer.code == .readNumber else { throw GuestError.numberFailed(op: op, response: answer.code) }
        return answer.size
    }

    /// Reads the guest's monotonic clock (READ_TIME).
    /// - Returns: The clock in nanoseconds.
    /// - Throws: What ``readNumber(op:pid:address:size:payload:)`` throws;
    ///   ``GuestError/Code/opMissing`` when the op table has no READ_TIME.
    nonisolated(nonsending) public func readTime() async throws -> UInt64 {
        try await readNumber(op: op(ops.readTime, "READ_TIME"))
    }

    // MARK: Interrupt windows

    /// Takes installs from this interrupt window's budget. Work that gets
    /// fewer than it wanted should do what it can and queue itself again.
    /// - Parameter wanted: How many installs the work would like.
    /// - Returns: How many it may make: at most `wanted`; always 0 outside
    ///   an interrupt conversation.
    public func takeInstallBudget(_ wanted: Int) -> Int {
        conversation.takeInstallBudget(wanted)
    }

    /// Queues a named interrupt, for instance this handler's own to continue
    /// in the next window.
    /// - Parameter name: The name a handler was registered with.
    /// - Throws: What ``PortalEngine/queueInterrupt(_:)`` throws.
    public func queueInterrupt(_ name: String) throws(PortalError) {
        try conversation.context.queueInterrupt(name)
    }
}

/// Spelled out so that no later extension can make `Guest` `Sendable`.
@available(*, unavailable, message: "a Guest belongs to its handler's task: await its operations one at a time")
extension Guest: Sendable {}
