@testable import PortalEngine
import Testing

/// The conversation's state machine alone, without an engine: every event
/// in every state, with the action it returns and the state it leaves.
@Suite("Conversation state machine")
struct ConversationStateMachineTests {
    typealias Machine = ConversationStateMachine

    static let ops = OpNumbers(.standard)
    static let regionSize = 4072

    /// The states, each reached from a new machine by events of `events`.
    static let states: [(name: String, make: @Sendable () -> Machine)] = [
        ("starting", { Machine() }),
        ("admitting", { machine(after: "command READ 8") }),
        ("awaitingAnswer", { machine(after: "command READ 8", "admitted") }),
        ("readingAnswer", { machine(after: "command READ 8", "admitted", "answer READ_OK") }),
        ("working", { machine(after: "command WRITE", "admitted", "answer WRITE_FAIL") }),
        ("ended", { machine(after: "work finished") }),
    ]

    /// A new machine after the named events, in order.
    static func machine(after names: String...) -> Machine {
        var machine = Machine()
        for name in names {
            guard let event = events.first(where: { $0.name == name }) else {
                Issue.record("no event named \(name)")
                continue
            }
            _ = event.send(&machine)
        }
        return machine
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String { "no such file" }
    }

    /// Every event the machine takes, with fixed arguments.
    static let events: [(name: String, send: @Sendable (inout Machine) -> Machine.Action)] = [
        ("command READ 8", { $0.commandSent(op: ops.read, size: 8, ops: ops, regionSize: regionSize) }),
        ("command READ -1", { $0.commandSent(op: ops.read, size: -1, ops: ops, regionSize: regionSize) }),
        ("command WRITE", { $0.commandSent(op: ops.write, size: 4, ops: ops, regionSize: regionSize) }),
        ("command READ_STR", { $0.commandSent(op: 3, size: 0, ops: ops, regionSize: regionSize) }),
        ("command op 0", { $0.commandSent(op: 0, size: 8, ops: ops, regionSize: regionSize) }),
        ("command op MAX", { $0.commandSent(op: ops.max, size: 8, ops: ops, regionSize: regionSize) }),
        ("admitted", { $0.admitted() }),
        ("admission refused", { $0.admissionRefused(.conversationLimit(4)) }),
        ("command unwritable", { $0.commandUnwritable(bytes: 32) }),
        ("work finished", { $0.workFinished() }),
        ("work failed (PortalError)", { $0.workFailed(PortalError.suspendedOutsideGuest) }),
        ("work failed (other error)", { $0.workFailed(Failure()) }),
        ("answer READ_OK", { $0.guestAnswered(UInt64(ResponseCode.readOK.rawValue)) }),
        ("answer READ_PARTIAL sign-extended", {
            $0.guestAnswered(0xffff_ffff_0000_0000 | UInt64(ResponseCode.readPartial.rawValue))
        }),
        ("answer READ_NUM", { $0.guestAnswered(UInt64(ResponseCode.readNumber.rawValue)) }),
        ("answer WRITE_FAIL", { $0.guestAnswered(UInt64(ResponseCode.writeFail.rawValue)) }),
        ("answer 0 (restart)", { $0.guestAnswered(0) }),
        ("answer 0 high bits set (restart)", { $0.guestAnswered(0x1234_5678_0000_0000) }),
        ("answer 0x1234", { $0.guestAnswered(0x1234) }),
        ("answer READ_OK high bits 1", { $0.guestAnswered(0x1_0000_0000 | UInt64(ResponseCode.readOK.rawValue)) }),
        ("header size 8", { $0.answerRead(RegionHeader(op: 0, pid: 0, address: 0, size: 8), regionSize: regionSize) }),
        ("header size 4073", {
            $0.answerRead(RegionHeader(op: 0, pid: 0, address: 0, size: 4073), regionSize: regionSize)
        }),
        ("answer unreadable", { $0.answerUnreadable(bytes: 24) }),
        ("ended from outside", { $0.endedFromOutside(.neverCameBack(waitStarts: 9)) }),
    ]

    /// The action, compactly: `end(failure | level none:_ table:_ cancel:_)`.
    static func describe(_ action: Machine.Action, failure: PortalError?) -> String {
        func ending(_ ending: Machine.Ending) -> String {
            "\(failure.map { "\($0)" } ?? "finished") | \(ending.level) none:\(ending.writesNone ? 1 : 0) table:\(ending.leavesTable ? 1 : 0) cancel:\(ending.cancelsWork ? 1 : 0)"
        }
        switch action {
        case .admit: return "admit"
        case .writeCommand: return "writeCommand"
        case .readAnswer(let code, let hint): return "readAnswer(\(code.name ?? "?"), \(hint))"
        case .readHeader(let code): return "readHeader(\(code.name ?? "?"))"
        case .resume(let code): return "resume(\(code.name ?? "?"))"
        case .restart(let e): return "restart(\(ending(e)))"
        case .end(let e): return "end(\(ending(e)))"
        case .refuse(let e):
            // The failure text is checked in refusalsNameTheEventAndTheState.
            return "refuse(none:\(e.writesNone ? 1 : 0) table:\(e.leavesTable ? 1 : 0) cancel:\(e.cancelsWork ? 1 : 0))"
        }
    }

    static func describe(_ state: Machine.State) -> String {
        switch state {
        case .starting: "starting"
        case .admitting(let hint): "admitting(\(hint))"
        case .working: "working"
        case .awaitingAnswer(let hint): "awaitingAnswer(\(hint))"
        case .readingAnswer(let code): "readingAnswer(\(code.name ?? "?"))"
        case .ended: "ended"
        }
    }

    /// What a state answers every event it does not expect: a refusal, whose
    /// ending depends on the state alone.
    static let refusals: [String: String] = [
        "starting": "refuse(none:0 table:0 cancel:1) => ended",
        "admitting": "refuse(none:0 table:0 cancel:1) => ended",
        "awaitingAnswer": "refuse(none:1 table:1 cancel:1) => ended",
        "readingAnswer": "refuse(none:1 table:1 cancel:1) => ended",
        "working": "refuse(none:1 table:1 cancel:1) => ended",
        "ended": "refuse(none:0 table:0 cancel:0) => ended",
    ]

    /// (state, event) -> "action => next state" for every pair that is not
    /// the state's refusal; `refusals` holds the other pairs.
    static let table: [String: [String: String]] = [
        "starting": [
            "command READ 8": "admit => admitting(8)",
            "command READ -1": "admit => admitting(0)",
            "command WRITE": "admit => admitting(0)",
            "command READ_STR": "admit => admitting(4072)",
            "command op 0":
                "end(the work sent op 0, expected an op from 1 to 55 of the op table | error none:0 table:0 cancel:1) => ended",
            "command op MAX":
                "end(the work sent op 56, expected an op from 1 to 55 of the op table | error none:0 table:0 cancel:1) => ended",
            "work finished": "end(finished | debug none:0 table:0 cancel:0) => ended",
            "work failed (PortalError)":
                "end(the handler awaited something other than a guest operation; handlers may only await the guest | error none:0 table:0 cancel:1) => ended",
            "work failed (other error)": "end(the work failed: no such file | error none:0 table:0 cancel:1) => ended",
        ],
        "admitting": [
            "admitted": "writeCommand => awaitingAnswer(8)",
            "admission refused":
                "end(4 conversations are already live (max_conversations) and every one is being served right now; this one was refused | error none:0 table:0 cancel:1) => ended",
        ],
        "awaitingAnswer": [
            "command unwritable":
                "end(the region cannot be written (32 bytes) | error none:0 table:1 cancel:1) => ended",
            "answer READ_OK": "readAnswer(READ_OK, 8) => readingAnswer(READ_OK)",
            "answer READ_PARTIAL sign-extended": "readAnswer(READ_PARTIAL, 8) => readingAnswer(READ_PARTIAL)",
            "answer READ_NUM": "readHeader(READ_NUM) => readingAnswer(READ_NUM)",
            "answer WRITE_FAIL": "resume(WRITE_FAIL) => working",
            "answer 0 (restart)":
                "restart(the guest started a new conversation on this region; the unfinished one was dropped | warn none:0 table:1 cancel:1) => ended",
            "answer 0 high bits set (restart)":
                "restart(the guest started a new conversation on this region; the unfinished one was dropped | warn none:0 table:1 cancel:1) => ended",
            "answer 0x1234":
                "end(the guest answered 0x1234, expected a response code from 0xf0000000 to 0xf0000006 | error none:1 table:1 cancel:1) => ended",
            "answer READ_OK high bits 1":
                "end(the guest answered 0x1f0000001, expected a response code from 0xf0000000 to 0xf0000006 | error none:1 table:1 cancel:1) => ended",
            "ended from outside":
                "end(the guest never came back to this conversation (9 conversations started waiting since its last trap, stale_after); reclaimed | warn none:0 table:0 cancel:1) => ended",
        ],
        "readingAnswer": [
            "header size 8": "resume(READ_OK) => working",
            "header size 4073":
                "end(the guest answered READ_OK with size 4073, more than the region's 4072 payload bytes | error none:1 table:1 cancel:1) => ended",
            "answer unreadable": "end(the region cannot be read (24 bytes) | error none:1 table:1 cancel:1) => ended",
        ],
        "working": [
            "command READ 8": "writeCommand => awaitingAnswer(8)",
            "command READ -1": "writeCommand => awaitingAnswer(0)",
            "command WRITE": "writeCommand => awaitingAnswer(0)",
            "command READ_STR": "writeCommand => awaitingAnswer(4072)",
            "command op 0":
                "end(the work sent op 0, expected an op from 1 to 55 of the op table | error none:1 table:1 cancel:1) => ended",
            "command op MAX":
                "end(the work sent op 56, expected an op from 1 to 55 of the op table | error none:1 table:1 cancel:1) => ended",
            "work finished": "end(finished | debug none:1 table:1 cancel:0) => ended",
            "work failed (PortalError)":
                "end(the handler awaited something other than a guest operation; handlers may only await the guest | error none:1 table:1 cancel:1) => ended",
            "work failed (other error)": "end(the work failed: no such file | error none:1 table:1 cancel:1) => ended",
        ],
        "ended": [:],
    ]

    @Test func everyStateAndEventPairIsListedAndHoldsExactly() throws {
        let eventNames = Set(Self.events.map(\.name))
        var pairs = 0
        for (stateName, make) in Self.states {
            let row = try #require(Self.table[stateName])
            let refusal = try #require(Self.refusals[stateName])
            // A misspelt event would leave its real pair to the refusal unchecked.
            #expect(Set(row.keys).subtracting(eventNames).isEmpty, "state \(stateName) lists unknown events")
            for (eventName, send) in Self.events {
                var machine = make()
                let action = send(&machine)
                let got = "\(Self.describe(action, failure: machine.failure)) => \(Self.describe(machine.state))"
                #expect((row[eventName] ?? refusal) == got, "(\(stateName), \(eventName))")
                pairs += 1
            }
        }
        #expect(pairs == 144)
        #expect(Self.table.count == Self.states.count && Self.refusals.count == Self.states.count)
    }

    @Test func theStatesAreReachedAsNamed() {
        let names = Self.states.map { Self.describe($0.make().state) }
        #expect(names == ["starting", "admitting(8)", "awaitingAnswer(8)", "readingAnswer(READ_OK)", "working", "ended"])
        let waiting = Self.states.map { $0.make().isWaiting }
        #expect(waiting == [false, false, true, true, true, false])
    }

    @Test func aTrapWithoutAConversationStartsOneOnlyWithAnswerZero() {
        #expect(Machine.trapWithoutConversation(answer: 0) == .start)
        #expect(Machine.trapWithoutConversation(answer: 0xffff_ffff_0000_0000) == .start)
        #expect(Machine.trapWithoutConversation(answer: UInt64(ResponseCode.readOK.rawValue))
                == .endGuestLoop(.strayAnswer(.readOK)))
        #expect(Machine.trapWithoutConversation(answer: 0x1234) == .endGuestLoop(.strayAnswer(ResponseCode(rawValue: 0x1234))))
    }

    @Test func refusalsNameTheEventAndTheState() {
        var waiting = Self.states[2].make()
        #expect(waiting.admitted() == .refuse(.init(level: .error, writesNone: true, leavesTable: true, cancelsWork: true)))
        #expect(waiting.failure == .workFailed(
            "the engine delivered an admission while the conversation was awaitingAnswer(payloadHint: 8)"))
        var starting = Machine()
        #expect(starting.guestAnswered(0) == .refuse(.init(level: .error, writesNone: false, leavesTable: false,
                                                            cancelsWork: true)))
        #expect(starting.failure == .workFailed("the engine delivered an answer while the conversation was starting"))
        var ended = Self.states[5].make()
        #expect(ended.failure == nil)
        #expect(ended.workFinished() == .refuse(.init(level: .error, writesNone: false, leavesTable: false,
                                                       cancelsWork: false)))
        #expect(ended.failure == .workFailed("the engine delivered the work's end while the conversation was ended"))
    }
}
