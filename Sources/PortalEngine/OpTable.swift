/// The operation numbers (`HYPER_OP_*`) of the guest module the host talks to.
///
/// The guest numbers its ops by their position in a list that has changed
/// between releases, so the table is data: the standard list below, or one
/// loaded at start-up from a file (`ops=PATH`). Op 0 is always NONE (end of
/// conversation) and MAX is one past the last op; the guest answers any op
/// outside 1 ..< MAX with WRITE_FAIL, so the host refuses to send one.
public struct OpTable: Sendable, Equatable {
    /// Op names in order; the op number of `names[i]` is `i + 1`.
    public let names: [String]

    /// The ops the engine's own guest operations use, resolved once so the
    /// per-command path does no lookup. Zero when the table lacks the op.
    public let read: UInt32
    /// WRITE's number, or 0.
    public let write: UInt32
    /// READ_STR's number, or 0.
    public let readString: UInt32
    /// READ_TIME's number, or 0.
    public let readTime: UInt32

    /// One past the last op number.
    public var max: UInt32 { UInt32(names.count + 1) }

    /// Makes a table from the guest module's op list.
    /// - Parameter names: Op names in order, upper case without `HYPER_OP_`:
    ///   the first is op 1.
    public init(names: [String]) {
        self.names = names
        func number(_ name: String) -> UInt32 {
            names.firstIndex(of: name).map { UInt32($0 + 1) } ?? 0
        }
        read = number("READ")
        write = number("WRITE")
        readString = number("READ_STR")
        readTime = number("READ_TIME")
    }

    /// Looks an op up by name.
    /// - Parameter name: The op's name (`READ`, or `HYPER_OP_READ`), any case.
    /// - Returns: The op's number, or nil when the table has no such op.
    public func number(of name: String) -> UInt32? {
        let bare = name.hasPrefix("HYPER_OP_") ? String(name.dropFirst(9)) : name
        return names.firstIndex(of: bare.uppercased()).map { UInt32($0 + 1) }
    }

    /// Names an op number.
    /// - Parameter op: The op's number.
    /// - Returns: Its name (`READ_STR`), or nil when the table has no such op.
    public func name(of op: UInt32) -> String? {
        contains(op) ? names[Int(op) - 1] : nil
    }

    /// Whether an op number is in the table (1 ..< ``max``): the guest
    /// answers any other with WRITE_FAIL.
    /// - Parameter op: The op's number.
    /// - Returns: Whether the table has it.
    public func contains(_ op: UInt32) -> Bool { op >= 1 && op < max }

    /// The op list of the current guest module (MAX = 56).
    public static let standard = OpTable(names: [
        "READ", "WRITE", "READ_STR", "READ_PTR_ARRAY", "DUMP", "EXEC", "OSI_PROC",
        "OSI_PROC_HANDLES", "OSI_PROC_ALL", "OSI_MAPPINGS", "OSI_PROC_MEM", "OSI_PROC_EXE",
        "OSI_PROC_PTREGS", "READ_PROCARGS", "READ_PROCENV", "READ_FDS", "READ_TIME",
        "READ_FILE", "WRITE_FILE", "REGISTER_UPROBE", "UNREGISTER_UPROBE", "REGISTER_KPROBE",
        "UNREGISTER_KPROBE", "REGISTER_SYSCALL_HOOK", "UNREGISTER_SYSCALL_HOOK",
        "REGISTER_PORTALCALL_MAGIC", "SET_PORTALCALL_FASTPATH", "REGISTER_SIGNAL_HOOK",
        "UNREGISTER_SIGNAL_HOOK", "REGISTER_EXIT_HOOK", "UNREGISTER_EXIT_HOOK", "FFI_EXEC",
        "KALLSYMS_LOOKUP", "TRAMP_GENERATE", "HYPERFS_ADD_HYPERFILE", "REGISTER_NETDEV",
        "LOOKUP_NETDEV", "SET_NETDEV_STATE", "GET_NETDEV_STATE", "COPY_BUF_GUEST",
        "PROCFS_CREATE_FILE", "PROCFS_CREATE_OR_LOOKUP_DIR", "SYSFS_CREATE_FILE",
        "SYSFS_CREATE_OR_LOOKUP_DIR", "DEVFS_CREATE_DEVICE", "DEVFS_CREATE_OR_LOOKUP_DIR",
        "SYSCTL_CREATE_FILE", "ANONFS_CREATE_FILE", "SOCKFS_CREATE_SOCKET", "MTD_NUKE",
        "MTD_CREATE", "SET_SCOPE_ENABLED", "VFS_OPEN", "VFS_READ", "VFS_CLOSE",
    ])

    /// Parses an op table file: one op name per line, numbered from 1 in
    /// order; blank lines and `#` comments are skipped; a `HYPER_OP_` prefix
    /// is accepted, and so are the X-macro lines of the guest module's op
    /// list header (`X(read, READ) \`). A line `NAME = N` must agree with its position, so a file
    /// copied from the guest's enum is checked rather than trusted.
    ///
    /// Lines end at `\n` (a `\r` before it is trimmed like a space: files
    /// written on Windows parse the same). The text is handled as UTF-8
    /// bytes, not characters, so "\r\n" is two bytes rather than one
    /// grapheme, and every check is linear: a table of the largest size
    /// `ops=` accepts (1 MiB, about 150,000 names) parses in well under a
    /// second. A name is checked to be a C identifier *before* it is
    /// upper-cased: upper-casing "ﬁle" or "straße" would make FILE and
    /// STRASSE of names no guest enum can hold.
    /// - Parameter text: the file's contents.
    /// - Throws: `OpTableError` naming the first line that is not an op
    ///   name, a duplicate, a `NAME = N` that disagrees with the position,
    ///   or a file without ops.
    package init(parsing text: String) throws(OpTableError) {
        var names: [String] = []
        var seen: Set<String> = []
        let bytes = Array(text.utf8)
        var lineStart = 0
        var lineNumber = 0
        while lineStart <= bytes.count {
            lineNumber += 1
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            var contentEnd = lineStart
            while contentEnd < lineEnd && bytes[contentEnd] != UInt8(ascii: "#") { contentEnd += 1 }
            let content = Self.opListEntry(bytes, lineStart..<lineEnd) ?? Self.trimmed(bytes, lineStart..<contentEnd)
            if content.isEmpty { continue }
            let line = String(decoding: bytes[content], as: UTF8.self)
            // Empty pieces are kept so that `= 5` or a lone `=` has an empty
            // name (refused below) rather than no name at all.
            let equals = bytes[content].firstIndex(of: UInt8(ascii: "="))
            let nameBytes = bytes[Self.trimmed(bytes, content.lowerBound..<(equals ?? content.upperBound))]
            let valueText = equals.map {
                String(decoding: bytes[Self.trimmed(bytes, ($0 + 1)..<content.upperBound)], as: UTF8.self)
            }
            guard Self.isIdentifier(nameBytes) else {
                throw OpTableError(line: lineNumber, message: "'\(line)' is not an op name")
            }
            var name = String(decoding: nameBytes, as: UTF8.self).uppercased()
            if name.hasPrefix("HYPER_OP_") { name.removeFirst(9) }
            // What follows the prefix must be an identifier too ("HYPER_OP_7UP").
            guard Self.isIdentifier(name.utf8[...]) else {
                throw OpTableError(line: lineNumber, message: "'\(line)' is not an op name")
            }
            if name == "NONE" || name == "MAX" {
                guard let valueText, let value = UInt32(valueText) else {
                    throw OpTableError(line: lineNumber, message: "\(name) needs its number")
                }
                let expected = name == "NONE" ? 0 : UInt32(names.count + 1)
                guard value == expected else {
                    throw OpTableError(line: lineNumber, message: "\(name) = \(value), expected \(expected)")
                }
                continue
            }
            if let valueText {
                guard let value = UInt32(valueText) else {
                    throw OpTableError(line: lineNumber, message: "\(name) = '\(valueText)' is not a number")
                }
                guard value == names.count + 1 else {
                    throw OpTableError(line: lineNumber,
                                       message: "\(name) = \(value), but its position makes it \(names.count + 1)")
                }
            }
            guard seen.insert(name).inserted else {
                throw OpTableError(line: lineNumber, message: "\(name) is listed twice")
            }
            names.append(name)
        }
        guard !names.isEmpty else { throw OpTableError(line: 0, message: "the file lists no ops") }
        self.init(names: names)
    }

    /// The op name of a line of the guest module's own op list header, an
    /// X-macro entry such as `    X(read, READ) \` (the last argument is the
    /// name), as a range of `bytes`; nil for any other line. So `ops=` can be
    /// given the module's header as it is, `#define` lines being comments.
    private static func opListEntry(_ bytes: [UInt8], _ line: Range<Int>) -> Range<Int>? {
        var entry = trimmed(bytes, line)
        if entry.last.map({ bytes[$0] == UInt8(ascii: "\\") }) == true {
            entry = trimmed(bytes, entry.lowerBound..<(entry.upperBound - 1))
        }
        if entry.last.map({ bytes[$0] == UInt8(ascii: ",") }) == true {
            entry = entry.lowerBound..<(entry.upperBound - 1)
        }
        guard entry.count >= 3, bytes[entry.lowerBound] == UInt8(ascii: "X"),
              bytes[entry.lowerBound + 1] == UInt8(ascii: "("), bytes[entry.upperBound - 1] == UInt8(ascii: ")")
        else { return nil }
        let arguments = (entry.lowerBound + 2)..<(entry.upperBound - 1)
        let lastComma = bytes[arguments].lastIndex(of: UInt8(ascii: ","))
        return trimmed(bytes, (lastComma.map { $0 + 1 } ?? arguments.lowerBound)..<arguments.upperBound)
    }

    /// `range` of `bytes` without leading and trailing spaces, tabs and `\r`.
    private static func trimmed(_ bytes: [UInt8], _ range: Range<Int>) -> Range<Int> {
        func isSpace(_ byte: UInt8) -> Bool {
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
        }
        var lower = range.lowerBound
        var upper = range.upperBound
        while lower < upper && isSpace(bytes[lower]) { lower += 1 }
        while upper > lower && isSpace(bytes[upper - 1]) { upper -= 1 }
        return lower..<upper
    }

    /// A C identifier in ASCII, as the guest module's enum spells its ops.
    private static func isIdentifier<Bytes: Collection<UInt8>>(_ name: Bytes) -> Bool {
        func isLetter(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || byte == UInt8(ascii: "_")
        }
        guard let first = name.first, isLetter(first) else { return false }
        return name.allSatisfy { isLetter($0) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) }
    }
}

/// Why an `ops=` file was refused.
package struct OpTableError: Error, Equatable, CustomStringConvertible {
    /// The line at fault, from 1; 0 for the file as a whole.
    package var line: Int
    /// What is wrong with it.
    package var message: String

    package init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    package var description: String { line > 0 ? "line \(line): \(message)" : message }
}
