/// What a conversation's work does next.
///
/// Noncopyable: each step is handed over once, from the work to the engine,
/// and consumed there. As a copyable enum it was destroyed through its
/// value witness on every round trip: 30 of a C round trip's instructions,
/// 280 of a Swift one's (callgrind, `make bench`).
public enum WorkStep: ~Copyable, @unchecked Sendable {
    /// Send this command and wait for the guest's answer.
    case command(PortalCommand)
    /// Done: end the conversation; the value goes to the return register.
    case finished(UInt64)
    /// Give up: end the conversation and report why.
    case failed(any Error)
}

/// Work a conversation runs. The engine asks for its first step, then hands
/// it each answer; the work never touches guest memory itself.
public protocol ConversationWork: AnyObject {
    func start(_ conversation: Conversation) -> WorkStep
    /// `response.payload` is valid during this call only.
    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep
    /// The conversation ended before the work did (the guest abandoned it,
    /// answered nonsense, or the plugin is unloading): let go of everything.
    func cancel(_ conversation: Conversation, because reason: PortalError)
}

/// Makes the work for one conversation. Handlers are registered as
/// factories so one registration serves any number of conversations at once.
public struct WorkFactory: Sendable {
    /// Given the hypercall that starts the conversation.
    public let make: @Sendable (Hypercall) -> any ConversationWork

    public init(_ make: @escaping @Sendable (Hypercall) -> any ConversationWork) {
        self.make = make
    }

    /// A Swift `async` handler: its return value is the hypercall's result.
    public static func async(_ body: @escaping GuestHandler) -> WorkFactory {
        WorkFactory { _ in AsyncWork(body) }
    }
}
