import PortalControl
import PortalTestSupport
import Testing

struct JSONTests {
    @Test func roundTrips() throws {
        let text = #"{"a":[1,-2,18446744073709551615,1.5,true,false,null],"b":"\"\\\n\t\u0001é😀","c":{}}"#
        let value = try JSONValue.parse(text)
        #expect(value["a"] == .array([.int(1), .int(-2), .uint(.max), .double(1.5), .bool(true), .bool(false), .null]))
        #expect(value["b"] == .string("\"\\\n\t\u{1}é😀"))
        #expect(value.serialized == text)
        #expect(try JSONValue.parse(#""\ud83d\ude00""#) == .string("😀"))
    }

    @Test func refusals() {
        let cases: [(String, JSONParseError)] = [
            ("", JSONParseError(offset: 0, reason: "expected a value, found the end of the text")),
            ("{\"a\" 1}", JSONParseError(offset: 5, reason: "expected ':'")),
            ("[1,]", JSONParseError(offset: 3, reason: "expected a value")),
            ("01", JSONParseError(offset: 0, reason: "a number may not start with 0")),
            ("1e999", JSONParseError(offset: 0, reason: "number out of range")),
            ("\"\\ud800\"", JSONParseError(offset: 7, reason: "a high surrogate must be followed by a \\u low surrogate")),
            ("\"a\nb\"", JSONParseError(offset: 2, reason: "control character in a string (escape it)")),
            ("{} {}", JSONParseError(offset: 3, reason: "unexpected text after the value")),
            ("tru", JSONParseError(offset: 0, reason: "expected 'true'")),
        ]
        for (text, error) in cases {
            #expect(throws: error) { try JSONValue.parse(text) }
        }
    }

    /// Generated texts: mutations of valid requests and random bytes. Every
    /// one parses or is refused with an error; none traps or recurses
    /// without bound, and whatever parses serialises to text that parses
    /// back to the same value.
    @Test func generatedTexts() throws {
        var generator = SplitMix(seed: 12)
        let seeds = [#"{"execute":"guest-memory-read","arguments":{"address":4096,"size":16},"id":"x"}"#,
                     #"{"execute":"query-portal","id":[1,{"a":null}]}"#, #"[1.5e3,-0,"\u00e9\ud83d\ude00"]"#]
        let alphabet = Array(#"{}[]",:\/-+.0123456789eEtrufalsn \u"#.utf8) + [0, 0x7f, 0xc3, 0xa9, 0xff, 0x0a]
        var parsed = 0
        for round in 0..<20_000 {
            var bytes = Array(seeds[round % seeds.count].utf8)
            if round % 7 == 0 {
                bytes = (0..<Int(generator.next() % 64)).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            } else {
                for _ in 0...(generator.next() % 4) {
                    let position = Int(generator.next() % UInt64(bytes.count + 1))
                    switch generator.next() % 3 {
                    case 0: bytes.insert(alphabet[Int(generator.next() % UInt64(alphabet.count))], at: position)
                    case 1: if position < bytes.count { bytes.remove(at: position) }
                    default: if position < bytes.count { bytes[position] = UInt8(truncatingIfNeeded: generator.next()) }
                    }
                }
            }
            var framer = QMPFramer(maxMessageBytes: 64)
            _ = framer.feed(bytes)
            _ = framer.finish()
            guard let value = try? JSONValue.parse(bytes) else { continue }
            parsed += 1
            #expect(try JSONValue.parse(value.serialized) == value)
        }
        #expect(parsed > 1000)
    }
}

struct FramerTests {
    @Test func framesObjectsWordsAndOversizedMessages() {
        var framer = QMPFramer(maxMessageBytes: 16)
        #expect(framer.feed(Array(#"  {"a":"}{"}[1]oops {"#.utf8)) == [
            .message(Array(#"{"a":"}{"}"#.utf8)), .message(Array("[1]".utf8)), .message(Array("oops".utf8))])
        #expect(framer.isMidMessage)
        #expect(framer.feed(Array(#""x":"\"}"}"#.utf8)) == [.message(Array(#"{"x":"\"}"}"#.utf8))])
        #expect(framer.feed(Array(#"{"long":"0123456789abcdef"} {}"#.utf8)) == [.oversized(27), .message(Array("{}".utf8))])
        #expect(framer.feed(Array(#"{"a":[}]} "#.utf8)) == [.message(Array(#"{"a":[}]"#.utf8)), .message([0x7d])])
        #expect(framer.feed(Array(#"{"a":]} "#.utf8)) == [.message(Array(#"{"a":]"#.utf8)), .message([0x7d])])
        var roomy = QMPFramer()
        #expect(roomy.feed(Array(#"{"execute":"query-portal","id":]}"#.utf8)) == [.message(Array(#"{"execute":"query-portal","id":]"#.utf8))])
        #expect(roomy.finish() == .message([0x7d]))
        #expect(framer.feed(Array("tail".utf8)) == [])
        #expect(framer.finish() == .message(Array("tail".utf8)))
    }
}
