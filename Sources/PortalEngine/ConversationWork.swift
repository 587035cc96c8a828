/// What a conversation's work does next.
///
/// Noncopyable: each step is handed over once, from the work to the engine,
/// and consumed there. As a copyable enum it was destroyed through its
/// value witness on every round trip: 30 of a C round trip's instructions,
/// 280 of a Swift one's (callgrind, `make bench`).
public enum WorkStep: ~Copyable, @unchecked Sendable {
    /// Send this command and wait for the guest's response.
    case command(PortalCommand)
    /// Done: end the conversation; the value goes to the return register.
    case finished(UInt64)
    /// Give up: end the conversation and report why.
    case failed(any Error)
}

/// Work a conversation runs as a step function: the engine asks for its
/// first step, then hands it each response; the work never touches guest
/// memory itself. What a Swift `async` handler (``GuestHandler``) is built
/// on, for work that needs the last nanoseconds of a round trip.
public protocol ConversationWork: AnyObject {
    /// The conversation's first step, on its first trap.
    /// - Parameter conversation: The conversation starting.
    /// - Returns: The first command, or the result at once.
    func start(_ conversation: Conversation) -> WorkStep
    /// The next step, given the guest's response to the last command.
    /// - Parameters:
    ///   - conversation: The conversation continuing.
    ///   - response: The response; its payload is valid during this call only.
    /// - Returns: The next command, the result, or a failure.
    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep
    /// The conversation ended before the work did (the guest abandoned it,
    /// answered nonsense, or the plugin is unloading): let go of everything.
    /// - Parameters:
    ///   - conversation: The conversation that ended.
    ///   - reason: Why it ended.
    func cancel(_ conversation: Conversation, because reason: PortalError)
}

/// Makes the work for one conversation. Handlers are registered as
/// factories so one registration serves any number of conversations at once.
public struct WorkFactory: Sendable {
    /// Given the hypercall that starts the conversation, makes its work.
    public let make: @Sendable (Hypercall) -> any ConversationWork

    /// Makes a factory of step-function work.
    /// - Parameter make: Given the hypercall that starts a conversation,
    ///   makes its work; it runs on the trapping vCPU's thread.
    public init(_ make: @escaping @Sendable (Hypercall) -> any ConversationWork) {
        self.make = make
    }

    /// A factory that runs a Swift `async` handler for each conversation.
    /// - Parameter body: The handler; its return value is the hypercall's result.
    /// - Returns: The factory.
    public static func async(_ body: @escaping GuestHandler) -> WorkFactory {
        WorkFactory { _ in AsyncWork(body) }
    }
}
