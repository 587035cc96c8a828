/// A command's failure as QMP reports it: `{"error": {"class": ..., "desc": ...}}`.
package struct QMPError: Error, Equatable, Sendable, CustomStringConvertible {
    /// QMP's error classes; clients dispatch on them.
    package enum ErrorClass: String, Sendable {
        /// Everything without a class of its own (QEMU's default).
        case genericError = "GenericError"
        /// The command does not exist (or not before `qmp_capabilities`).
        case commandNotFound = "CommandNotFound"
    }

    /// The error's class.
    package let errorClass: ErrorClass
    /// The human-readable reason.
    package let desc: String

    /// Creates an error.
    /// - Parameters:
    ///   - errorClass: the QMP class.
    ///   - desc: one line saying what went wrong.
    package init(_ errorClass: ErrorClass, _ desc: String) {
        self.errorClass = errorClass
        self.desc = desc
    }

    /// Creates a `GenericError`, the class of every error but an unknown command.
    /// - Parameter desc: one line saying what went wrong.
    package init(_ desc: String) {
        self.init(.genericError, desc)
    }

    package var description: String { "\(errorClass.rawValue): \(desc)" }

    /// The `{"class": ..., "desc": ...}` object.
    package var json: JSONValue {
        .object([("class", .string(errorClass.rawValue)), ("desc", .string(desc))])
    }
}

/// A command's arguments with QEMU's checks and messages: missing,
/// unexpected and mistyped parameters are refused with the same words
/// QEMU uses ("Parameter 'size' is missing").
package struct CommandArguments: Sendable {
    /// The members of the request's `arguments` object.
    package let members: [(String, JSONValue)]

    /// Wraps the `arguments` object of a request.
    /// - Parameter members: the object's members (empty when absent).
    package init(_ members: [(String, JSONValue)]) { self.members = members }

    /// Refuses any argument not in `known`.
    /// - Parameter known: the names the command takes.
    /// - Throws: `QMPError` naming the first unexpected parameter.
    package func allowOnly(_ known: [String]) throws(QMPError) {
        for (name, _) in members where !known.contains(name) {
            throw QMPError("Parameter '\(name)' is unexpected")
        }
    }

    /// The value of `name`, if given.
    /// - Parameter name: the argument's name.
    /// - Returns: its value or nil.
    package func value(_ name: String) -> JSONValue? {
        members.last(where: { $0.0 == name })?.1
    }

    private func required(_ name: String) throws(QMPError) -> JSONValue {
        guard let found = value(name) else { throw QMPError("Parameter '\(name)' is missing") }
        return found
    }

    /// A required unsigned 64-bit integer (an address).
    /// - Parameter name: the argument's name.
    /// - Returns: its value.
    /// - Throws: `QMPError` if missing or not an integer in range.
    package func uint64(_ name: String) throws(QMPError) -> UInt64 {
        guard let number = try required(name).uint64Value else {
            throw QMPError("Invalid parameter type for '\(name)', expected: uint64")
        }
        return number
    }

    /// A required integer within `range`.
    /// - Parameters:
    ///   - name: the argument's name.
    ///   - range: the values accepted.
    /// - Returns: its value.
    /// - Throws: `QMPError` if missing, not an integer, or out of range.
    package func int(_ name: String, in range: ClosedRange<Int>) throws(QMPError) -> Int {
        try int(name, in: range, default: nil)
    }

    /// An optional integer within `range`.
    /// - Parameters:
    ///   - name: the argument's name.
    ///   - range: the values accepted.
    ///   - fallback: the value when absent (nil: required).
    /// - Returns: the value given, or `fallback`.
    /// - Throws: `QMPError` if not an integer, or out of range.
    package func int(_ name: String, in range: ClosedRange<Int>, default fallback: Int?) throws(QMPError) -> Int {
        guard let given = value(name) else {
            if let fallback { return fallback }
            throw QMPError("Parameter '\(name)' is missing")
        }
        guard let number = given.intValue else {
            throw QMPError("Invalid parameter type for '\(name)', expected: int")
        }
        guard range.contains(number) else {
            throw QMPError("Parameter '\(name)' expects a value from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    /// A required string.
    /// - Parameter name: the argument's name.
    /// - Returns: its value.
    /// - Throws: `QMPError` if missing or not a string.
    package func string(_ name: String) throws(QMPError) -> String {
        guard let text = try required(name).stringValue else {
            throw QMPError("Invalid parameter type for '\(name)', expected: string")
        }
        return text
    }

    /// An optional flag.
    /// - Parameters:
    ///   - name: the argument's name.
    ///   - fallback: the value when absent.
    /// - Returns: the value given, or `fallback`.
    /// - Throws: `QMPError` if not a bool.
    package func bool(_ name: String, default fallback: Bool) throws(QMPError) -> Bool {
        guard let given = value(name) else { return fallback }
        guard case .bool(let flag) = given else {
            throw QMPError("Invalid parameter type for '\(name)', expected: bool")
        }
        return flag
    }

    /// An optional number of seconds (a request timeout).
    /// - Parameters:
    ///   - name: the argument's name.
    ///   - fallback: the value when absent.
    /// - Returns: seconds, above 0 and at most a day.
    /// - Throws: `QMPError` if not a number in range.
    package func seconds(_ name: String, default fallback: Double) throws(QMPError) -> Double {
        guard let given = value(name) else { return fallback }
        guard let seconds = given.doubleValue else {
            throw QMPError("Invalid parameter type for '\(name)', expected: number")
        }
        guard seconds > 0, seconds <= 86_400 else {
            throw QMPError("Parameter '\(name)' expects a number of seconds above 0 and at most 86400")
        }
        return seconds
    }
}

/// Lowercase hexadecimal text of bytes, two digits each.
/// - Parameter bytes: the bytes.
/// - Returns: the text ("" for none).
package func hexDigits(of bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0xf)])
    }
    return String(decoding: text, as: UTF8.self)
}

/// Bytes from hexadecimal text (upper or lower case, an even number of
/// digits, no separators).
/// - Parameter text: the digits.
/// - Returns: the bytes, or nil if the text is not whole hex bytes.
package func bytes(fromHex text: String) -> [UInt8]? {
    let utf8 = Array(text.utf8)
    guard utf8.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var result: [UInt8] = []
    result.reserveCapacity(utf8.count / 2)
    var index = 0
    while index < utf8.count {
        guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
        result.append(high << 4 | low)
        index += 2
    }
    return result
}
