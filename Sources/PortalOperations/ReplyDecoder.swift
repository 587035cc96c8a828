import PortalEngine

/// A reply's bytes break its op's format. The message says which count,
/// offset or string was wrong and what the bytes allowed.
package struct ReplyFormatError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, in words.
    package var message: String

    /// - Parameter message: What is wrong with the reply.
    package init(_ message: String) { self.message = message }

    /// The message, as logs print it.
    package var description: String { message }
}

/// The pure decoders of the guest module's reply formats (PROTOCOL.md §6):
/// bytes and a ``GuestLayout`` in, a value or a ``ReplyFormatError`` out.
///
/// `payload` is always the reply's payload exactly as the guest answered it:
/// `size` bytes from the region's offset 24. Every count, offset and string
/// in it is treated as hostile: it is checked against `payload.count` before
/// use, so no input traps, over-reads or loops.
package enum ReplyDecoder {
    /// Bytes of the `{u64 result_count, u64 total_count}` header lists start with.
    package static let listHeaderSize = 16
    /// Bytes of one OSI_PROC_ALL record.
    package static let processRecordSize = 56
    /// Bytes of one OSI_MAPPINGS record.
    package static let mappingRecordSize = 72
    /// Where an OSI_MAPPINGS record keeps its `name_off` (the C decoder
    /// points into the pool through it).
    package static let mappingNameOffsetField = 24
    /// Bytes of one READ_FDS record.
    package static let fileDescriptorRecordSize = 16
    /// Where a READ_FDS record keeps its path's `name_off` (the C decoder
    /// points into the pool through it).
    package static let fileDescriptorPathOffsetField = 8
    /// Bytes of OSI_PROC's 26 fields, where its name starts.
    package static let processDetailsSize = 208

    /// One page of a list (OSI_PROC_ALL, OSI_MAPPINGS, READ_FDS).
    package struct Page<Record: Sendable & Equatable>: Sendable, Equatable {
        /// How many records the whole list has, as the guest counted it
        /// when it served this page.
        package var totalCount: UInt64
        /// This page's records, in order.
        package var records: [Record]
    }

    // MARK: Processes

    /// Decodes an OSI_PROC_ALL page: the list header, then `result_count`
    /// records of 56 bytes.
    /// - Parameters:
    ///   - payload: The reply's payload.
    ///   - layout: The guest's byte order.
    /// - Returns: The page.
    /// - Throws: ``ReplyFormatError`` if the header or a record does not fit the payload.
    package static func processPage(_ payload: UnsafeRawBufferPointer,
                                   layout: GuestLayout) throws(ReplyFormatError) -> Page<ProcessSummary> {
        try listPage(payload, layout: layout, recordSize: processRecordSize, what: "process") {
            base, _, _ throws(ReplyFormatError) in
            ProcessSummary(
                pid: u64(payload, base, layout), parentPID: u64(payload, base + 8, layout),
                createTime: u64(payload, base + 16, layout), uid: u32(payload, base + 24, layout),
                gid: u32(payload, base + 28, layout), effectiveUID: u32(payload, base + 32, layout),
                effectiveGID: u32(payload, base + 36, layout),
                name: text(payload, from: base + 40, upTo: base + 56))
        }
    }

    /// Decodes an OSI_PROC reply: 26 u64 fields, then the name at
    /// `name_offset` running to a NUL or to the end of the payload (the
    /// guest does not count the NUL in `size`).
    /// - Parameters:
    ///   - payload: The reply's payload.
    ///   - layout: The guest's byte order.
    /// - Returns: The task's details.
    /// - Throws: ``ReplyFormatError`` if the fields do not fit or `name_offset` points outside the payload.
    package static func processDetails(_ payload: UnsafeRawBufferPointer,
                                      layout: GuestLayout) throws(ReplyFormatError) -> ProcessDetails {
        guard payload.count >= processDetailsSize else {
            throw ReplyFormatError("the reply has \(payload.count) bytes, fewer than the \(processDetailsSize) of OSI_PROC's 26 fields")
        }
        let fields = (0..<26).map { u64(payload, $0 * 8, layout) }
        let nameOffset = fields[4]
        guard nameOffset >= UInt64(processDetailsSize), nameOffset <= UInt64(payload.count) else {
            throw ReplyFormatError("name_offset \(nameOffset) is outside the name area \(processDetailsSize)...\(payload.count)")
        }
        return ProcessDetails(fields: fields, name: text(payload, from: Int(nameOffset), upTo: payload.count))
    }

    /// Decodes an OSI_PROC_MEM reply: `{u64 start_brk, u64 brk}`.
    /// - Parameters:
    ///   - payload: The reply's payload.
    ///   - layout: The guest's byte order.
    /// - Returns: The heap's bounds.
    /// - Throws: ``ReplyFormatError`` if the payload is shorter than 16 bytes.
    package static func heapBounds(_ payload: UnsafeRawBufferPointer,
                                  layout: GuestLayout) throws(ReplyFormatError) -> HeapBounds {
        guard payload.count >= 16 else {
            throw ReplyFormatError("the reply has \(payload.count) bytes, expected 16 (start_brk, brk)")
        }
        return HeapBounds(start: u64(payload, 0, layout), end: u64(payload, 8, layout))
    }

    // MARK: Mappings and file descriptors

    /// Decodes an OSI_MAPPINGS page: the list header, `result_count`
    /// records of 72 bytes, and names in a string pool after the records
    /// (each `name_off` is counted from the payload's start).
    /// - Parameters:
    ///   - payload: The reply's payload.
    ///   - layout: The guest's byte order.
    /// - Returns: The page.
    /// - Throws: ``ReplyFormatError`` for a count beyond the payload, a
    ///   `name_off` outside the pool, or a name without its NUL.
    package static func mappingPage(_ payload: UnsafeRawBufferPointer,
                                   layout: GuestLayout) throws(ReplyFormatError) -> Page<MemoryMapping> {
        try listPage(payload, layout: layout, recordSize: mappingRecordSize, what: "mapping") {
            base, index, poolStart throws(ReplyFormatError) in
            let name = try poolString(payload, offset: u64(payload, base + mappingNameOffsetField, layout),
                                      poolStart: poolStart, record: "mapping \(index)")
            return MemoryMapping(
                start: u64(payload, base, layout), size: u64(payload, base + 8, layout),
                fileOffset: u64(payload, base + 32, layout), flags: u64(payload, base + 40, layout),
                device: u64(payload, base + 56, layout), inode: u64(payload, base + 64, layout),
                name: name)
        }
    }

    /// Decodes a READ_FDS page: the list header, `result_count` records
    /// `{u64 fd, u64 name_off}` and paths in a string pool after them. The
    /// fd to resume from is not in the payload but in the reply's header
    /// (`PortalResponse.address`).
    /// - Parameters:
    ///   - payload: The reply's payload.
    ///   - layout: The guest's byte order.
    /// - Returns: The page.
    /// - Throws: ``ReplyFormatError`` for a count beyond the payload, a
    ///   `name_off` outside the pool, or a path without its NUL.
    package static func fileDescriptorPage(_ payload: UnsafeRawBufferPointer,
                                          layout: GuestLayout) throws(ReplyFormatError) -> Page<FileDescriptor> {
        try listPage(payload, layout: layout, recordSize: fileDescriptorRecordSize, what: "fd") {
            base, index, poolStart throws(ReplyFormatError) in
            // An int in a u64: a 32-bit kernel may or may not sign-extend -100.
            let number = Int32(truncatingIfNeeded: u64(payload, base, layout))
            let path = try poolString(payload, offset: u64(payload, base + fileDescriptorPathOffsetField, layout),
                                      poolStart: poolStart, record: "fd record \(index)")
            return FileDescriptor(number: number, path: path)
        }
    }

    // MARK: Strings

    /// Decodes a reply that is one string of `size` bytes (OSI_PROC_EXE):
    /// the text up to the first NUL, or all of it.
    /// - Parameter payload: The reply's payload.
    /// - Returns: The text, UTF-8 with invalid sequences repaired.
    package static func string(_ payload: UnsafeRawBufferPointer) -> String {
        text(payload, from: 0, upTo: payload.count)
    }

    /// Decodes `count` NUL-terminated strings laid back to back (a raw argv
    /// area, READ_PTR_ARRAY's payload). A last string without its NUL is
    /// kept: the guest stops without one when the region is full.
    /// - Parameter payload: The bytes.
    /// - Returns: The strings in order.
    package static func nulSeparatedStrings(_ payload: UnsafeRawBufferPointer) -> [String] {
        var strings: [String] = []
        var start = 0
        for index in 0..<payload.count where payload[index] == 0 {
            strings.append(String(decoding: UnsafeRawBufferPointer(rebasing: payload[start..<index]), as: UTF8.self))
            start = index + 1
        }
        if start < payload.count {
            strings.append(String(decoding: UnsafeRawBufferPointer(rebasing: payload[start...]), as: UTF8.self))
        }
        return strings
    }

    /// Decodes READ_PROCARGS: the guest turned the NULs between arguments
    /// into spaces, so this splits at spaces, and an argument that contained
    /// a space comes back as two (the format cannot tell them apart).
    /// - Parameter payload: The reply's payload.
    /// - Returns: The arguments as far as the format keeps them.
    package static func spaceSeparatedArguments(_ payload: UnsafeRawBufferPointer) -> [String] {
        let line = text(payload, from: 0, upTo: payload.count)
        return line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
    }

    /// Decodes READ_PROCENV: `K=V\0K=V\0...`, each entry split at its FIRST `=`.
    /// - Parameter payload: The reply's payload.
    /// - Returns: The entries in order (empty ones skipped).
    package static func environment(_ payload: UnsafeRawBufferPointer) -> [EnvironmentVariable] {
        nulSeparatedStrings(payload).compactMap { entry in
            guard !entry.isEmpty else { return nil }
            guard let equals = entry.firstIndex(of: "=") else { return EnvironmentVariable(name: entry, value: "") }
            return EnvironmentVariable(name: String(entry[..<equals]),
                                       value: String(entry[entry.index(after: equals)...]))
        }
    }

    // MARK: Files

    /// VFS_OPEN's reply: `{i32 -errno, u32 handle, u64 fs_magic}`.
    package struct OpenedFile: Sendable, Equatable {
        /// 0 on success, else the positive errno.
        package var errno: Int32
        /// The handle for VFS_READ and VFS_CLOSE (`generation << 8 | slot + 1`).
        package var handle: UInt32
        /// The file system's magic number (`0x9fa0` for procfs, ...).
        package var fileSystemMagic: UInt64
    }

    /// VFS_READ's reply: `{i32 -errno, u32 nbytes, u8 eof, 7 pad}` then the bytes.
    package struct FileChunk: Sendable, Equatable {
        /// 0 on success, else the positive errno.
        package var errno: Int32
        /// The bytes read.
        package var bytes: [UInt8]
        /// Whether the guest reached the end of the file with this read.
        package var isEndOfFile: Bool
    }

    /// Decodes a VFS_OPEN reply.
    /// - Parameters:
    ///   - payload: The reply's payload.
    ///   - layout: The guest's byte order.
    /// - Returns: The errno, handle and magic.
    /// - Throws: ``ReplyFormatError`` if the payload is shorter than 16 bytes.
    package static func openedFile(_ payload: UnsafeRawBufferPointer,
                                  layout: GuestLayout) throws(ReplyFormatError) -> OpenedFile {
        guard payload.count >= 16 else {
            throw ReplyFormatError("the reply has \(payload.count) bytes, expected 16 (errno, handle, fs_magic)")
        }
        return OpenedFile(errno: errno(payload, layout), handle: u32(payload, 4, layout),
                          fileSystemMagic: u64(payload, 8, layout))
    }

    /// Decodes a VFS_READ reply.
    /// - Parameters:
    ///   - payload: The reply's payload.
    ///   - layout: The guest's byte order.
    ///   - wanted: The byte count the command asked for.
    /// - Returns: The errno, the bytes and whether the file ended.
    /// - Throws: ``ReplyFormatError`` if `nbytes` is more than was asked for or than the payload holds.
    package static func fileChunk(_ payload: UnsafeRawBufferPointer, layout: GuestLayout,
                                 wanted: Int) throws(ReplyFormatError) -> FileChunk {
        guard payload.count >= 16 else {
            throw ReplyFormatError("the reply has \(payload.count) bytes, expected at least 16 (errno, nbytes, eof)")
        }
        let count = u32(payload, 4, layout)
        guard UInt64(count) <= UInt64(max(wanted, 0)), Int(count) <= payload.count - 16 else {
            throw ReplyFormatError("nbytes \(count) is more than the \(wanted) asked for or the \(payload.count - 16) bytes the reply holds")
        }
        return FileChunk(errno: errno(payload, layout),
                         bytes: Array(UnsafeRawBufferPointer(rebasing: payload[16..<16 + Int(count)])),
                         isEndOfFile: payload[8] != 0)
    }

    /// Decodes a VFS_CLOSE reply: `{i32 -errno, u32 pad}`.
    /// - Parameters:
    ///   - payload: The reply's payload.
    ///   - layout: The guest's byte order.
    /// - Returns: 0, or the positive errno.
    /// - Throws: ``ReplyFormatError`` if the payload is shorter than 4 bytes.
    package static func closeStatus(_ payload: UnsafeRawBufferPointer,
                                   layout: GuestLayout) throws(ReplyFormatError) -> Int32 {
        guard payload.count >= 4 else {
            throw ReplyFormatError("the reply has \(payload.count) bytes, expected at least 4 (errno)")
        }
        return errno(payload, layout)
    }

    // MARK: Pieces

    /// The page every list reply is: the list header, checked against the
    /// payload, then `result_count` records of `recordSize` bytes, each
    /// decoded by `record`; a string pool, where the list has one, starts
    /// right after the last record.
    /// - Parameters:
    ///   - what: the records' name in the message of a count that does not fit.
    ///   - record: decodes the record at offset `base`, number `index`,
    ///     given where the string pool starts.
    private static func listPage<Record: Sendable & Equatable>(
        _ payload: UnsafeRawBufferPointer, layout: GuestLayout, recordSize: Int, what: String,
        _ record: (_ base: Int, _ index: Int, _ poolStart: Int) throws(ReplyFormatError) -> Record
    ) throws(ReplyFormatError) -> Page<Record> {
        guard payload.count >= listHeaderSize else {
            throw ReplyFormatError("the reply has \(payload.count) bytes, fewer than the \(listHeaderSize) of the list header")
        }
        let count = u64(payload, 0, layout)
        let room = (payload.count - listHeaderSize) / recordSize
        guard count <= UInt64(room) else {
            throw ReplyFormatError("result_count \(count) is more than the \(room) \(what) records of \(recordSize) bytes the reply's \(payload.count) bytes hold")
        }
        let poolStart = listHeaderSize + Int(count) * recordSize
        var records: [Record] = []
        records.reserveCapacity(Int(count))
        for index in 0..<Int(count) { records.append(try record(listHeaderSize + index * recordSize, index, poolStart)) }
        return Page(totalCount: u64(payload, 8, layout), records: records)
    }

    /// A NUL-terminated string at `offset` (from the payload's start),
    /// which must lie in the pool after the records.
    private static func poolString(_ payload: UnsafeRawBufferPointer, offset: UInt64, poolStart: Int,
                                   record: String) throws(ReplyFormatError) -> String {
        guard offset >= UInt64(poolStart), offset < UInt64(payload.count) else {
            throw ReplyFormatError("\(record): name_off \(offset) is outside the string pool \(poolStart)..<\(payload.count)")
        }
        let start = Int(offset)
        guard let end = payload[start...].firstIndex(of: 0) else {
            throw ReplyFormatError("\(record): the name at \(offset) has no NUL before the reply ends at \(payload.count)")
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: payload[start..<end]), as: UTF8.self)
    }

    /// The text in `from ..< upTo`, cut at the first NUL.
    private static func text(_ payload: UnsafeRawBufferPointer, from start: Int, upTo end: Int) -> String {
        let field = payload[start..<end]
        let stop = field.firstIndex(of: 0) ?? end
        return String(decoding: UnsafeRawBufferPointer(rebasing: payload[start..<stop]), as: UTF8.self)
    }

    @inline(__always)
    private static func u64(_ payload: UnsafeRawBufferPointer, _ offset: Int, _ layout: GuestLayout) -> UInt64 {
        layout.load(UInt64.self, from: payload.baseAddress! + offset)
    }

    @inline(__always)
    private static func u32(_ payload: UnsafeRawBufferPointer, _ offset: Int, _ layout: GuestLayout) -> UInt32 {
        layout.load(UInt32.self, from: payload.baseAddress! + offset)
    }

    /// The `-errno` i32 at the start of a VFS reply, as a positive errno.
    private static func errno(_ payload: UnsafeRawBufferPointer, _ layout: GuestLayout) -> Int32 {
        let raw = Int32(bitPattern: u32(payload, 0, layout))
        return raw == Int32.min ? Int32.max : -raw
    }
}
