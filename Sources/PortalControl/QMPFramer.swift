/// Cuts a byte stream from a QMP client into messages.
///
/// QMP has no length prefix and no required newline: a message ends where
/// its top-level JSON object (or array) closes. The framer counts braces
/// and brackets apart (as QEMU's JSON streamer does), outside strings: the
/// message ends when both are back to zero, or at once when either closes
/// more than it opened. It never holds more than one message,
/// and never more than `maxMessageBytes` of it: a longer message is skipped
/// to its end and reported as `.oversized`, after which the stream goes on.
/// Text that does not start with `{` or `[` is cut at the next whitespace
/// and reported as a message of its own (the parser then refuses it).
package struct QMPFramer: Sendable {
    /// One message's worth of the stream.
    package enum Frame: Sendable, Equatable {
        /// A complete message's bytes (not yet parsed).
        case message([UInt8])
        /// A message longer than `maxMessageBytes`; its byte count.
        case oversized(Int)
    }

    /// The largest message kept: 1 MiB.
    package static let defaultLimit = 1 << 20

    /// Messages longer than this are refused.
    package let maxMessageBytes: Int

    private var buffer: [UInt8] = []
    /// Bytes of the current message so far, kept or not.
    private var length = 0
    private var braces = 0
    private var brackets = 0
    private var inString = false
    private var escaped = false
    /// A message that began with something other than `{` or `[`.
    private var bare = false

    /// Creates a framer.
    /// - Parameter maxMessageBytes: the largest message kept whole.
    package init(maxMessageBytes: Int = QMPFramer.defaultLimit) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// Whether part of a message is waiting for more bytes.
    package var isMidMessage: Bool { length > 0 }

    /// Feeds bytes read from the client.
    /// - Parameter bytes: the next bytes of the stream.
    /// - Returns: the messages these bytes complete, in order.
    package mutating func feed(_ bytes: some Sequence<UInt8>) -> [Frame] {
        var frames: [Frame] = []
        for byte in bytes { take(byte, into: &frames) }
        return frames
    }

    private mutating func take(_ byte: UInt8, into frames: inout [Frame]) {
        let isSpace = byte == 0x20 || byte == 0x0a || byte == 0x0d || byte == 0x09
        let opens = byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[")
        if length == 0 {
            if isSpace { return }
            bare = !opens
            braces = byte == UInt8(ascii: "{") ? 1 : 0
            brackets = byte == UInt8(ascii: "[") ? 1 : 0
            inString = false
            escaped = false
            append(byte)
            return
        }
        if bare {
            if isSpace || opens {
                emit(into: &frames)
                if opens { take(byte, into: &frames) }
                return
            }
            append(byte)
            return
        }
        append(byte)
        if inString {
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inString = false
            }
            return
        }
        switch byte {
        case UInt8(ascii: "\""): inString = true
        case UInt8(ascii: "{"): braces += 1
        case UInt8(ascii: "["): brackets += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            if byte == UInt8(ascii: "}") { braces -= 1 } else { brackets -= 1 }
            if (braces == 0 && brackets == 0) || braces < 0 || brackets < 0 { emit(into: &frames) }
        default: break
        }
    }

    private mutating func append(_ byte: UInt8) {
        length += 1
        if length <= maxMessageBytes {
            buffer.append(byte)
        } else if !buffer.isEmpty {
            buffer = []   // over the limit: count the rest, keep nothing
        }
    }

    private mutating func emit(into frames: inout [Frame]) {
        frames.append(length > maxMessageBytes ? .oversized(length) : .message(buffer))
        buffer.removeAll(keepingCapacity: buffer.count <= 4096)
        length = 0
        braces = 0
        brackets = 0
        bare = false
    }

    /// Ends the stream: a bare word waiting for its terminator is complete,
    /// an unclosed object is dropped.
    /// - Returns: the last message, if the stream ended with a bare word.
    package mutating func finish() -> Frame? {
        guard length > 0, bare else { return nil }
        var frames: [Frame] = []
        emit(into: &frames)
        return frames.first
    }
}
