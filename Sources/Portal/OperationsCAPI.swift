import CPortalShim
import PortalEngine
import PortalOperations

// The C decoders of include/portal/operations.h: thin adapters over the
// Swift decoders and paging rules of PortalOperations, so C and Swift share
// one implementation of every format check.

/// Why a C decoder failed: the message goes to this thread's error buffer
/// and `conversation->error` points at it.
private func fail(_ conversation: UnsafeMutablePointer<portal_conversation>?, _ message: String) -> Int32 {
    let buffer = portal_shim_error_buffer()!
    var bytes = Array(message.utf8.prefix(Int(PORTAL_SHIM_ERROR_SIZE) - 1))
    bytes.append(0)
    bytes.withUnsafeBytes { UnsafeMutableRawPointer(buffer).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    conversation?.pointee.error = UnsafePointer(buffer)
    return -1
}

/// The conversation's layout and the response's payload, once both are
/// known to be usable; nil after `fail` otherwise.
private func readOKPayload(_ op: String, _ conversation: UnsafeMutablePointer<portal_conversation>?,
                           _ response: UnsafePointer<portal_response>?) -> (GuestLayout, UnsafeRawBufferPointer)? {
    guard let conversation, let response else {
        _ = fail(conversation, "\(op): the conversation or the response is NULL")
        return nil
    }
    let bits = conversation.pointee.word_bits
    guard bits == 32 || bits == 64 else {
        _ = fail(conversation, "\(op): the conversation's word_bits is \(bits), expected 32 or 64")
        return nil
    }
    let layout = GuestLayout(wordBits: Int(bits), byteOrder: conversation.pointee.big_endian != 0 ? .big : .little)
    let code = ResponseCode(rawValue: response.pointee.code)
    guard code == .readOK else {
        _ = fail(conversation, "\(op): the guest answered \(code), expected READ_OK")
        return nil
    }
    let size = response.pointee.size
    guard size <= UInt64(conversation.pointee.region_size), size == 0 || response.pointee.data != nil else {
        _ = fail(conversation, "\(op): the response's size \(size) does not fit the region's \(conversation.pointee.region_size) bytes")
        return nil
    }
    return (layout, UnsafeRawBufferPointer(start: response.pointee.data, count: Int(size)))
}

/// The response's payload decoded by `decode` (a ReplyDecoder function),
/// with the layout and payload it was decoded from; nil after `fail`.
private func decodeReply<Value>(_ op: String, _ conversation: UnsafeMutablePointer<portal_conversation>?,
                                _ response: UnsafePointer<portal_response>?,
                                _ decode: (UnsafeRawBufferPointer, GuestLayout) throws(ReplyFormatError) -> Value)
    -> (value: Value, layout: GuestLayout, payload: UnsafeRawBufferPointer)? {
    guard let (layout, payload) = readOKPayload(op, conversation, response) else { return nil }
    do { return (try decode(payload, layout), layout, payload) } catch {
        _ = fail(conversation, "\(op): malformed reply: \(error.message)")
        return nil
    }
}

/// A page of records decoded by `decode`, once it is known to fit the
/// caller's `capacity` records; nil after `fail`.
private func decodePage<Record, CRecord>(_ op: String, _ conversation: UnsafeMutablePointer<portal_conversation>?,
                                         _ response: UnsafePointer<portal_response>?,
                                         into records: UnsafeMutablePointer<CRecord>?, capacity: Int,
                                         _ decode: (UnsafeRawBufferPointer, GuestLayout) throws(ReplyFormatError)
                                             -> ReplyDecoder.Page<Record>)
    -> (page: ReplyDecoder.Page<Record>, layout: GuestLayout, payload: UnsafeRawBufferPointer)? {
    guard let (page, layout, payload) = decodeReply(op, conversation, response, decode) else { return nil }
    guard page.records.count <= capacity, page.records.isEmpty || records != nil else {
        _ = fail(conversation, "\(op): the page has \(page.records.count) records, the array holds \(capacity)")
        return nil
    }
    return (page, layout, payload)
}

/// The string at `offset` of `payload`, in place: the name_off of a record
/// the Swift decoder already checked (inside the pool, NUL-terminated).
private func cString(in payload: UnsafeRawBufferPointer, recordField: Int, layout: GuestLayout) -> UnsafePointer<CChar> {
    let offset = Int(layout.load(UInt64.self, from: payload.baseAddress! + recordField))
    return UnsafePointer((payload.baseAddress! + offset).assumingMemoryBound(to: CChar.self))
}

/// Copies at most `capacity` - 1 bytes of `text` and a NUL into a fixed C
/// `char` array (a process name's `char[16]`), the rest zero.
private func copyName(_ text: String, into field: UnsafeMutableRawPointer, capacity: Int) {
    let buffer = UnsafeMutableRawBufferPointer(start: field, count: capacity)
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
    buffer.copyBytes(from: text.utf8.prefix(capacity - 1))
}

/// The body every paged decoder shares: the cursor's NULL check, the page
/// (known to fit `capacity` records), the cursor's done check, the cursor
/// moved on by `advance` (false after `fail`), then each record written by
/// `fill`; only the list's paging rule and its records differ.
/// - Returns: the number of records written, or -1 after `fail`.
private func decodeList<Record, CRecord>(
    _ op: String, _ conversation: UnsafeMutablePointer<portal_conversation>?,
    _ response: UnsafePointer<portal_response>?, _ cursor: UnsafeMutablePointer<portal_list_cursor>?,
    into records: UnsafeMutablePointer<CRecord>?, capacity: Int,
    _ decode: (UnsafeRawBufferPointer, GuestLayout) throws(ReplyFormatError) -> ReplyDecoder.Page<Record>,
    advance: (UnsafeMutablePointer<portal_list_cursor>, ReplyDecoder.Page<Record>) -> Bool,
    fill: (_ record: UnsafeMutablePointer<CRecord>, _ index: Int, _ decoded: Record,
           _ layout: GuestLayout, _ payload: UnsafeRawBufferPointer) -> Void) -> Int32 {
    guard let cursor else { return fail(conversation, "\(op): the cursor is NULL") }
    guard let (page, layout, payload) = decodePage(op, conversation, response, into: records, capacity: capacity,
                                                   decode) else { return -1 }
    guard cursor.pointee.done == 0 else {
        return fail(conversation, "\(op): the list was already complete; no page should have been asked for")
    }
    guard advance(cursor, page) else { return -1 }
    for (index, decoded) in page.records.enumerated() { fill(records! + index, index, decoded, layout, payload) }
    return Int32(page.records.count)
}

/// Applies the skip-count rule to the cursor; false after `fail`.
private func advanceSkipCount<Record>(_ op: String, _ conversation: UnsafeMutablePointer<portal_conversation>?,
                                      _ cursor: UnsafeMutablePointer<portal_list_cursor>,
                                      _ page: ReplyDecoder.Page<Record>, limit: UInt64) -> Bool {
    var paging = SkipCountPaging(limit: limit, collected: cursor.pointee.collected,
                                 total: cursor.pointee.has_total != 0 ? cursor.pointee.total : nil)
    do {
        let done = try paging.accept(count: page.records.count, totalCount: page.totalCount)
        cursor.pointee.collected = paging.collected
        cursor.pointee.total = page.totalCount
        cursor.pointee.has_total = 1
        cursor.pointee.next_addr = paging.nextAddress
        cursor.pointee.done = done ? 1 : 0
        return true
    } catch {
        _ = fail(conversation, "\(op): \(error.message)")
        return false
    }
}

/// Applies READ_FDS's resume rule (the next descriptor in the response's
/// addr) to the cursor; false after `fail`.
private func advanceResumingFDs<Record>(_ op: String, _ conversation: UnsafeMutablePointer<portal_conversation>?,
                                        _ response: UnsafePointer<portal_response>?,
                                        _ cursor: UnsafeMutablePointer<portal_list_cursor>,
                                        _ page: ReplyDecoder.Page<Record>) -> Bool {
    var paging = ResumeFDPaging(limit: PagingLimits.maxFileDescriptors,
                                start: Int32(truncatingIfNeeded: cursor.pointee.next_addr),
                                collected: Int(clamping: cursor.pointee.collected))
    do {
        let done = try paging.accept(count: page.records.count,
                                     resume: Int32(truncatingIfNeeded: response!.pointee.addr))
        cursor.pointee.collected = UInt64(paging.collected)
        cursor.pointee.next_addr = paging.nextAddress
        cursor.pointee.done = done ? 1 : 0
        return true
    } catch {
        _ = fail(conversation, "\(op): \(error.message)")
        return false
    }
}

/// The Swift side of the C API's `portal_decode_processes`; include/portal/operations.h documents it.
@_cdecl("portal_decode_processes")
@_spi(CAPI) public func portalDecodeProcesses(_ conversation: UnsafeMutablePointer<portal_conversation>?,
                                  _ response: UnsafePointer<portal_response>?,
                                  _ cursor: UnsafeMutablePointer<portal_list_cursor>?,
                                  _ records: UnsafeMutablePointer<portal_process_record>?,
                                  _ capacity: Int) -> Int32 {
    let op = "OSI_PROC_ALL"
    return decodeList(op, conversation, response, cursor, into: records, capacity: capacity, ReplyDecoder.processPage,
                      advance: { advanceSkipCount(op, conversation, $0, $1, limit: PagingLimits.maxProcesses) }) {
        record, _, process, _, _ in
        record.pointee = portal_process_record()
        record.pointee.pid = process.pid
        record.pointee.parent_pid = process.parentPID
        record.pointee.create_time = process.createTime
        record.pointee.uid = process.uid
        record.pointee.gid = process.gid
        record.pointee.effective_uid = process.effectiveUID
        record.pointee.effective_gid = process.effectiveGID
        withUnsafeMutableBytes(of: &record.pointee.name) { copyName(process.name, into: $0.baseAddress!, capacity: $0.count) }
    }
}

/// The Swift side of the C API's `portal_decode_mappings`; include/portal/operations.h documents it.
@_cdecl("portal_decode_mappings")
@_spi(CAPI) public func portalDecodeMappings(_ conversation: UnsafeMutablePointer<portal_conversation>?,
                                 _ response: UnsafePointer<portal_response>?,
                                 _ cursor: UnsafeMutablePointer<portal_list_cursor>?,
                                 _ records: UnsafeMutablePointer<portal_mapping_record>?,
                                 _ capacity: Int) -> Int32 {
    let op = "OSI_MAPPINGS"
    return decodeList(op, conversation, response, cursor, into: records, capacity: capacity, ReplyDecoder.mappingPage,
                      advance: { advanceSkipCount(op, conversation, $0, $1, limit: PagingLimits.maxMappings) }) {
        record, index, mapping, layout, payload in
        record.pointee = portal_mapping_record()
        record.pointee.start = mapping.start
        record.pointee.end = mapping.end
        record.pointee.file_offset = mapping.fileOffset
        record.pointee.flags = mapping.flags
        record.pointee.inode = mapping.inode
        record.pointee.device_major = mapping.deviceMajor
        record.pointee.device_minor = mapping.deviceMinor
        withUnsafeMutableBytes(of: &record.pointee.permissions) {
            copyName(mapping.permissions, into: $0.baseAddress!, capacity: $0.count)
        }
        // The decoder checked name_off and its NUL: point at the pool in place.
        let base = ReplyDecoder.listHeaderSize + index * ReplyDecoder.mappingRecordSize
            + ReplyDecoder.mappingNameOffsetField
        record.pointee.name = cString(in: payload, recordField: base, layout: layout)
    }
}

/// The Swift side of the C API's `portal_decode_fds`; include/portal/operations.h documents it.
@_cdecl("portal_decode_fds")
@_spi(CAPI) public func portalDecodeFDs(_ conversation: UnsafeMutablePointer<portal_conversation>?,
                            _ response: UnsafePointer<portal_response>?,
                            _ cursor: UnsafeMutablePointer<portal_list_cursor>?,
                            _ records: UnsafeMutablePointer<portal_fd_record>?,
                            _ capacity: Int) -> Int32 {
    let op = "READ_FDS"
    return decodeList(op, conversation, response, cursor, into: records, capacity: capacity,
                      ReplyDecoder.fileDescriptorPage,
                      advance: { advanceResumingFDs(op, conversation, response, $0, $1) }) {
        record, index, descriptor, layout, payload in
        let base = ReplyDecoder.listHeaderSize + index * ReplyDecoder.fileDescriptorRecordSize
            + ReplyDecoder.fileDescriptorPathOffsetField
        record.pointee = portal_fd_record(fd: descriptor.number,
                                          path: cString(in: payload, recordField: base, layout: layout))
    }
}

/// The Swift side of the C API's `portal_decode_process`; include/portal/operations.h documents it.
@_cdecl("portal_decode_process")
@_spi(CAPI) public func portalDecodeProcess(_ conversation: UnsafeMutablePointer<portal_conversation>?,
                                _ response: UnsafePointer<portal_response>?,
                                _ details: UnsafeMutablePointer<portal_process_details>?) -> Int32 {
    let op = "OSI_PROC"
    guard let details else { return fail(conversation, "\(op): the details pointer is NULL") }
    guard let (process, _, _) = decodeReply(op, conversation, response, ReplyDecoder.processDetails) else { return -1 }
    details.pointee = portal_process_details()
    withUnsafeMutableBytes(of: &details.pointee.fields) { fields in
        for (index, value) in process.fields.enumerated() { fields.storeBytes(of: value, toByteOffset: index * 8, as: UInt64.self) }
    }
    withUnsafeMutableBytes(of: &details.pointee.name) { copyName(process.name, into: $0.baseAddress!, capacity: $0.count) }
    return 0
}

/// The Swift side of the C API's `portal_decode_heap`; include/portal/operations.h documents it.
@_cdecl("portal_decode_heap")
@_spi(CAPI) public func portalDecodeHeap(_ conversation: UnsafeMutablePointer<portal_conversation>?,
                             _ response: UnsafePointer<portal_response>?,
                             _ start: UnsafeMutablePointer<UInt64>?, _ end: UnsafeMutablePointer<UInt64>?) -> Int32 {
    let op = "OSI_PROC_MEM"
    guard let start, let end else { return fail(conversation, "\(op): the start or end pointer is NULL") }
    guard let (heap, _, _) = decodeReply(op, conversation, response, ReplyDecoder.heapBounds) else { return -1 }
    start.pointee = heap.start
    end.pointee = heap.end
    return 0
}

/// The Swift side of the C API's `portal_decode_vfs_open`; include/portal/operations.h documents it.
@_cdecl("portal_decode_vfs_open")
@_spi(CAPI) public func portalDecodeVFSOpen(_ conversation: UnsafeMutablePointer<portal_conversation>?,
                                _ response: UnsafePointer<portal_response>?,
                                _ opened: UnsafeMutablePointer<portal_vfs_open>?) -> Int32 {
    let op = "VFS_OPEN"
    guard let opened else { return fail(conversation, "\(op): the result pointer is NULL") }
    guard let (file, _, _) = decodeReply(op, conversation, response, ReplyDecoder.openedFile) else { return -1 }
    opened.pointee = portal_vfs_open(error: file.errno, handle: file.handle, fs_magic: file.fileSystemMagic)
    return 0
}

/// The Swift side of the C API's `portal_decode_vfs_read`; include/portal/operations.h documents it.
@_cdecl("portal_decode_vfs_read")
@_spi(CAPI) public func portalDecodeVFSRead(_ conversation: UnsafeMutablePointer<portal_conversation>?,
                                _ response: UnsafePointer<portal_response>?, _ wanted: UInt32,
                                _ chunk: UnsafeMutablePointer<portal_vfs_chunk>?) -> Int32 {
    let op = "VFS_READ"
    guard let chunk else { return fail(conversation, "\(op): the result pointer is NULL") }
    guard let (decoded, _, payload) = decodeReply(op, conversation, response, { (payload, layout) throws(ReplyFormatError) in
        try ReplyDecoder.fileChunk(payload, layout: layout, wanted: Int(wanted))
    }) else { return -1 }
    // The bytes in place, after the 16-byte status the decoder checked.
    chunk.pointee = portal_vfs_chunk(
        error: decoded.errno, length: UInt32(decoded.bytes.count), end_of_file: decoded.isEndOfFile ? 1 : 0,
        bytes: (payload.baseAddress! + 16).assumingMemoryBound(to: UInt8.self))
    return 0
}
