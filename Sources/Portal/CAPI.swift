import CPortalShim
import PortalEngine

// The C API of include/portal/portal.h.

/// A C pointer handed back to C untouched.
struct OpaqueUserData: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer?
}

/// Conversation work written in C as a step function.
///
/// The `portal_conversation` the step function sees and its private state
/// live in one block allocated with the work, so steps never allocate.
final class CStepWork: ConversationWork {
    private let step: portal_step_fn
    private let userData: OpaqueUserData
    private let block: UnsafeMutablePointer<portal_conversation>

    init(step: @escaping portal_step_fn, userData: OpaqueUserData, call: Hypercall) {
        self.step = step
        self.userData = userData
        // The state follows the struct, 16-byte aligned as portal.h promises.
        let stateOffset = (MemoryLayout<portal_conversation>.stride + 15) & ~15
        let size = stateOffset + Int(PORTAL_STATE_SIZE)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        block = raw.bindMemory(to: portal_conversation.self, capacity: 1)
        block.pointee.state = raw + stateOffset
        block.pointee.call = portal_call(number: call.number.rawValue, vcpu: UInt32(truncatingIfNeeded: call.vcpu),
                                         args: (call.arg1, call.arg2, call.arg3, call.arg4))
        block.pointee.region_address = call.arg3
    }

    deinit { UnsafeMutableRawPointer(block).deallocate() }

    func start(_ conversation: Conversation) -> WorkStep {
        block.pointee.word_bits = UInt32(conversation.layout.wordBits)
        block.pointee.big_endian = conversation.layout.byteOrder == .big ? 1 : 0
        return run(conversation, nil)
    }

    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        var answer = portal_response(
            code: response.code.rawValue, addr: response.address, size: response.size,
            data: response.payload.baseAddress?.assumingMemoryBound(to: UInt8.self))
        return run(conversation, &answer)
    }

    func cancel(_ conversation: Conversation, because reason: PortalError) {}

    private func run(_ conversation: Conversation, _ response: UnsafePointer<portal_response>?) -> WorkStep {
        let budgetBefore = conversation.window?.installBudget ?? 0
        block.pointee.region_size = UInt32(conversation.regionSize)
        block.pointee.install_budget = UInt32(budgetBefore)
        block.pointee.error = nil
        var command = portal_command()
        var result: UInt64 = 0
        let outcome = step(userData.pointer, block, response, &command, &result)
        // The step may have spent budget by decrementing the field itself.
        let spent = budgetBefore - Int(min(block.pointee.install_budget, UInt32(budgetBefore)))
        if spent > 0 { _ = conversation.window?.take(spent) }
        switch outcome {
        case PORTAL_STEP_COMMAND:
            // A bit this library does not know would change the command in a
            // way it cannot honour: better a failed conversation than a
            // guest given the wrong size.
            guard command.flags & ~PORTAL_COMMAND_TOTAL_SIZE == 0 else {
                return .failed(PortalError.workFailed(
                    "the step function set portal_command flags \(hex(command.flags)); only PORTAL_COMMAND_TOTAL_SIZE (0x1) exists"))
            }
            // The engine cuts a payload to the region; a length beyond what a
            // buffer can have (SIZE_MAX from a broken step) is cut first.
            let length = Int(clamping: UInt(bitPattern: command.data_length))
            let payload: CommandPayload = command.data.map {
                .borrowed(UnsafeRawBufferPointer(start: $0, count: length))
            } ?? .none
            return .command(PortalCommand(op: command.op, pid: command.pid, address: command.addr,
                                          size: command.size, payload: payload,
                                          sizeIsTotalLength: command.flags & PORTAL_COMMAND_TOTAL_SIZE != 0))
        case PORTAL_STEP_FINISH:
            return .finished(result)
        case PORTAL_STEP_FAIL:
            let message = block.pointee.error.map { String(cString: $0) }
                ?? "the step function returned PORTAL_STEP_FAIL without setting conversation->error"
            return .failed(PortalError.workFailed(message))
        default:
            return .failed(PortalError.workFailed(
                "the step function returned \(outcome.rawValue), expected PORTAL_STEP_COMMAND, _FINISH or _FAIL"))
        }
    }
}

/// `body`'s result, or `failure` (with a log line) before init_plugin or
/// after uninit_plugin.
private func withEngine<R>(_ function: String, failure: R, _ body: (PortalEngine) -> R) -> R {
    PluginInstance.withCurrent { body($0.engine) } ?? {
        LogSink.standardError.logger(level: .error).error("\(function): the plugin is not initialised")
        return failure
    }()
}

/// The Swift side of the C API's `portal_attach`; include/portal/portal.h documents it.
@_cdecl("portal_attach")
@_spi(CAPI) public func portalAttach(_ number: UInt32, _ step: portal_step_fn?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withEngine("portal_attach", failure: -1) { engine in
        guard let step else {
            engine.logger.error("portal_attach(\(HypercallNumber(rawValue: number))): the step function is NULL")
            return -1
        }
        return registering(engine) { () throws(PortalError) in
            try engine.attach(HypercallNumber(rawValue: number), stepWork(step, userData))
        }
    }
}

/// The work of a C step function, a `CStepWork` for each conversation.
private func stepWork(_ step: portal_step_fn, _ userData: UnsafeMutableRawPointer?) -> WorkFactory {
    let data = OpaqueUserData(pointer: userData)
    return WorkFactory { call in CStepWork(step: step, userData: data, call: call) }
}

/// 0 when `register` succeeds; -1, with the engine's refusal logged, when it throws.
private func registering(_ engine: PortalEngine, _ register: () throws(PortalError) -> Void) -> Int32 {
    do {
        try register()
        return 0
    } catch {
        engine.logger.error("\(error)")
        return -1
    }
}

/// The Swift side of the C API's `portal_detach`; include/portal/portal.h documents it.
@_cdecl("portal_detach")
@_spi(CAPI) public func portalDetach(_ number: UInt32) -> Int32 {
    withEngine("portal_detach", failure: -1) { engine in
        guard engine.detach(HypercallNumber(rawValue: number)) else {
            engine.logger.error("portal_detach(\(HypercallNumber(rawValue: number))): no work is attached to it")
            return -1
        }
        return 0
    }
}

/// The Swift side of the C API's `portal_observe`; include/portal/portal.h documents it.
@_cdecl("portal_observe")
@_spi(CAPI) public func portalObserve(_ number: UInt32, _ name: UnsafePointer<CChar>?, _ step: portal_step_fn?,
                                      _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withEngine("portal_observe", failure: -1) { engine in
        guard let name, let step else {
            engine.logger.error("portal_observe(\(HypercallNumber(rawValue: number))): the name or the step function is NULL")
            return -1
        }
        return registering(engine) { () throws(PortalError) in
            try engine.observe(HypercallNumber(rawValue: number), as: String(cString: name), stepWork(step, userData))
        }
    }
}

/// The Swift side of the C API's `portal_stop_observing`; include/portal/portal.h documents it.
@_cdecl("portal_stop_observing")
@_spi(CAPI) public func portalStopObserving(_ number: UInt32, _ name: UnsafePointer<CChar>?) -> Int32 {
    withEngine("portal_stop_observing", failure: -1) { engine in
        guard let name else {
            engine.logger.error("portal_stop_observing(\(HypercallNumber(rawValue: number))): the name is NULL")
            return -1
        }
        let observer = String(cString: name)
        guard engine.stopObserving(HypercallNumber(rawValue: number), as: observer) else {
            engine.logger.error("portal_stop_observing(\(HypercallNumber(rawValue: number))): no observer '\(observer)'")
            return -1
        }
        return 0
    }
}

/// The Swift side of the C API's `portal_register_interrupt`; include/portal/portal.h documents it.
@_cdecl("portal_register_interrupt")
@_spi(CAPI) public func portalRegisterInterrupt(_ name: UnsafePointer<CChar>?, _ step: portal_step_fn?,
                                    _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withEngine("portal_register_interrupt", failure: -1) { engine in
        guard let name, let step else {
            engine.logger.error("portal_register_interrupt: the name or the step function is NULL")
            return -1
        }
        engine.registerInterrupt(String(cString: name), stepWork(step, userData))
        return 0
    }
}

/// The Swift side of the C API's `portal_queue_interrupt`; include/portal/portal.h documents it.
@_cdecl("portal_queue_interrupt")
@_spi(CAPI) public func portalQueueInterrupt(_ name: UnsafePointer<CChar>?) -> Bool {
    withEngine("portal_queue_interrupt", failure: false) { engine in
        guard let name else {
            engine.logger.error("portal_queue_interrupt: the name is NULL")
            return false
        }
        do {
            try engine.queueInterrupt(String(cString: name))
            return true
        } catch {
            engine.logger.error("\(error)")
            return false
        }
    }
}

/// The Swift side of the C API's `portal_take_install_budget`; include/portal/portal.h documents it.
@_cdecl("portal_take_install_budget")
@_spi(CAPI) public func portalTakeInstallBudget(_ conversation: UnsafeMutablePointer<portal_conversation>?,
                                    _ wanted: UInt32) -> UInt32 {
    guard let conversation else { return 0 }
    let granted = min(wanted, conversation.pointee.install_budget)
    conversation.pointee.install_budget -= granted
    return granted
}

/// The Swift side of the C API's `portal_op`; include/portal/portal.h documents it.
@_cdecl("portal_op")
@_spi(CAPI) public func portalOp(_ name: UnsafePointer<CChar>?) -> UInt32 {
    guard let name else { return 0 }
    let opName = String(cString: name)
    return PluginInstance.withCurrent { $0.engine.configuration.ops.number(of: opName) ?? 0 } ?? 0
}
