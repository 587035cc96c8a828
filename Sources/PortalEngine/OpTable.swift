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
    public let write: UInt32
    public let readString: UInt32
    public let readTime: UInt32

    /// One past the last op number.
    public var max: UInt32 { UInt32(names.count + 1) }

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

    /// The number of op `name` (`READ`, or `HYPER_OP_READ`), if the table has it.
    public func number(of name: String) -> UInt32? {
        let bare = name.hasPrefix("HYPER_OP_") ? String(name.dropFirst(9)) : name
        return names.firstIndex(of: bare.uppercased()).map { UInt32($0 + 1) }
    }

    public func name(of op: UInt32) -> String? {
        contains(op) ? names[Int(op) - 1] : nil
    }

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
    public init(parsing text: String) throws(OpTableError) {
        var names: [String] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = Self.opListEntry(rawLine)
                ?? rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .trimmingSpaces()
            if line.isEmpty { continue }
            // Empty pieces are kept so that `= 5` or a lone `=` has an empty
            // name (refused below) rather than no name at all.
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                .map { $0.trimmingSpaces() }
            var name = parts[0].uppercased()
            if name.hasPrefix("HYPER_OP_") { name.removeFirst(9) }
            guard Self.isIdentifier(name) else {
                throw OpTableError(line: index + 1, message: "'\(line)' is not an op name")
            }
            if name == "NONE" || name == "MAX" {
                guard parts.count == 2, let value = UInt32(parts[1]) else {
                    throw OpTableError(line: index + 1, message: "\(name) needs its number")
                }
                let expected = name == "NONE" ? 0 : UInt32(names.count + 1)
                guard value == expected else {
                    throw OpTableError(line: index + 1, message: "\(name) = \(value), expected \(expected)")
                }
                continue
            }
            if parts.count == 2 {
                guard let value = UInt32(parts[1]) else {
                    throw OpTableError(line: index + 1, message: "\(name) = '\(parts[1])' is not a number")
                }
                guard value == names.count + 1 else {
                    throw OpTableError(line: index + 1,
                                       message: "\(name) = \(value), but its position makes it \(names.count + 1)")
                }
            }
            guard !names.contains(name) else {
                throw OpTableError(line: index + 1, message: "\(name) is listed twice")
            }
            names.append(name)
        }
        guard !names.isEmpty else { throw OpTableError(line: 0, message: "the file lists no ops") }
        self.init(names: names)
    }

    /// The op name of a line of the guest module's own op list header, an
    /// X-macro entry such as `    X(read, READ) \` (the last argument is the
    /// name); nil for any other line. So `ops=` can be given the module's
    /// header as it is, `#define` lines being comments.
    private static func opListEntry(_ line: Substring) -> String? {
        var entry = Substring(line.trimmingSpaces())
        if entry.hasSuffix("\\") { entry = Substring(entry.dropLast().trimmingSpaces()) }
        if entry.hasSuffix(",") { entry = entry.dropLast() }
        guard entry.hasPrefix("X("), entry.hasSuffix(")") else { return nil }
        let arguments = entry.dropFirst(2).dropLast()
        guard let name = arguments.split(separator: ",", omittingEmptySubsequences: false).last else { return nil }
        return name.trimmingSpaces()
    }

    /// A C identifier, as the guest module's enum spells its ops.
    private static func isIdentifier(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }
}

public struct OpTableError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { line > 0 ? "line \(line): \(message)" : message }
}

extension Substring {
    func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = lastIndex(where: { !isSpace($0) })!
        return String(self[first...last])
    }
}
