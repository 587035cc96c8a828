@testable import PortalEngine
import PortalTestSupport
@testable import PortalOperations
import Testing

/// Overwrites a u64 field of a reply in guest byte order.
func poke(_ payload: inout [UInt8], at offset: Int, _ value: UInt64, _ layout: GuestLayout) {
    payload.replaceSubrange(offset..<offset + 8, with: layout.bytes(of: value))
}

@Suite("Hostile replies end the operation with a precise error")
struct HostileReplyTests {
    @Test(arguments: allLayouts)
    func aRecordCountBeyondThePage(layout: GuestLayout) {
        let guest = MockGuest(layout: layout, world: processWorld(count: 1))
        guest.tamper = { _, _, _, payload in poke(&payload, at: 0, 2, layout) }
        #expect(failure(converse(guest) { try await $0.processes() })
                == "OSI_PROC_ALL for all processes: malformed reply: result_count 2 is more than the 1 process records of 56 bytes the reply's 72 bytes hold")
        guest.tamper = { _, _, _, payload in poke(&payload, at: 0, .max, layout) }
        #expect(failure(converse(guest) { try await $0.processes() })
                == "OSI_PROC_ALL for all processes: malformed reply: result_count 18446744073709551615 is more than the 1 process records of 56 bytes the reply's 72 bytes hold")
    }

    @Test(arguments: allLayouts)
    func aNameOffsetOutsideThePoolOrWithoutItsNUL(layout: GuestLayout) {
        let guest = MockGuest(layout: layout, world: mappingWorld(count: 2))
        guest.tamper = { _, _, _, payload in poke(&payload, at: 16 + 72 + 24, 100, layout) }
        #expect(failure(converse(guest) { try await $0.mappings() })
                == "OSI_MAPPINGS for the current task: malformed reply: mapping 1: name_off 100 is outside the string pool 160..<2055")
        guest.tamper = { _, _, _, payload in poke(&payload, at: 16 + 24, 1 << 40, layout) }
        #expect(failure(converse(guest) { try await $0.mappings() })
                == "OSI_MAPPINGS for the current task: malformed reply: mapping 0: name_off 1099511627776 is outside the string pool 160..<2055")
        // The reply ends one byte early: the last name loses its NUL.
        guest.tamper = { _, _, answer, payload in
            payload.removeLast()
            answer.size -= 1
        }
        #expect(failure(converse(guest) { try await $0.mappings() })
                == "OSI_MAPPINGS for the current task: malformed reply: mapping 1: the name at 2048 has no NUL before the reply ends at 2054")
    }

    @Test(arguments: allLayouts)
    func aTotalThatGrowsWhilePaging(layout: GuestLayout) {
        let guest = MockGuest(layout: layout, world: processWorld(count: 73))
        guest.tamper = { _, request, _, payload in
            if request.address > 0 { poke(&payload, at: 8, 74, layout) }
        }
        #expect(failure(converse(guest) { try await $0.processes() })
                == "OSI_PROC_ALL for all processes: total_count grew from 73 to 74 while paging (at record 72)")
    }

    @Test(arguments: allLayouts)
    func aPageThatNeverEndsTheList(layout: GuestLayout) {
        // The same full page again and again, claiming more processes than Linux allows.
        let guest = MockGuest(layout: layout, world: processWorld(count: 72))
        guest.tamper = { _, _, _, payload in poke(&payload, at: 8, 5_000_000, layout) }
        #expect(failure(converse(guest) { try await $0.processes() })
                == "OSI_PROC_ALL for all processes: total_count 5000000 is more than the 4194304 a guest can have")
        // Mappings: every page full, the total always one more than collected.
        let maps = MockGuest(layout: layout, world: mappingWorld(count: 28))
        maps.tamper = { _, request, _, payload in poke(&payload, at: 8, request.address + 29, layout) }
        #expect(failure(converse(maps) { try await $0.mappings() })
                == "OSI_MAPPINGS for the current task: total_count grew from 29 to 57 while paging (at record 28)")
    }

    @Test(arguments: allLayouts)
    func aResumeFDThatDoesNotMoveForward(layout: GuestLayout) {
        var world = processWorld(count: 1)
        world.processes[0].fileDescriptors = [(0, "/dev/null"), (7, "/tmp/x")]
        let guest = MockGuest(layout: layout, world: world)
        guest.tamper = { _, _, answer, _ in answer.address = 7 }
        #expect(failure(converse(guest) { try await $0.fileDescriptors() })
                == "READ_FDS for the current task: the reply's resume fd 7 does not move past 7 (page from fd 7, 3 fds so far)")
        guest.tamper = { _, _, answer, payload in
            answer.address = 9
            poke(&payload, at: 0, 0, layout)
        }
        #expect(failure(converse(guest) { try await $0.fileDescriptors() })
                == "READ_FDS for the current task: a page with no fds asks to resume at fd 9 (page from fd 0, 0 fds so far)")
    }

    @Test(arguments: allLayouts)
    func processDetailsThatDoNotFit(layout: GuestLayout) {
        let guest = MockGuest(layout: layout, world: processWorld(count: 2))
        guest.tamper = { _, _, answer, _ in answer.size = 100 }
        #expect(failure(converse(guest) { try await $0.process(pid: 101) })
                == "OSI_PROC for pid 101: malformed reply: the reply has 100 bytes, fewer than the 208 of OSI_PROC's 26 fields")
        guest.tamper = { _, _, _, payload in poke(&payload, at: 32, 5000, layout) }
        #expect(failure(converse(guest) { try await $0.process(pid: 101) })
                == "OSI_PROC for pid 101: malformed reply: name_offset 5000 is outside the name area 208...223")
        guest.tamper = { _, _, answer, _ in answer.op = ResponseCode.readNumber.rawValue }
        #expect(failure(converse(guest) { try await $0.process(pid: 101) })
                == "OSI_PROC for pid 101: the guest answered READ_NUM, expected READ_OK")
    }

    @Test(arguments: allLayouts)
    func aFileChunkLongerThanItsReply(layout: GuestLayout) {
        var world = World()
        world.files = ["/etc/hosts": Array("127.0.0.1 localhost\n".utf8)]
        let guest = MockGuest(layout: layout, world: world)
        guest.tamper = { op, _, _, payload in
            if op == "VFS_READ" { payload.replaceSubrange(4..<8, with: layout.bytes(of: UInt32(4000))) }
        }
        #expect(failure(converse(guest) { try await $0.readFile(path: "/etc/hosts") })
                == "VFS_READ for path /etc/hosts: malformed reply: nbytes 4000 is more than the 4056 asked for or the 20 bytes the reply holds")
        // The handle was still closed.
        #expect(guest.served.last?.hasPrefix("VFS_CLOSE") == true)
    }

    /// Every decoder on random bytes of every length up to a page, in every
    /// layout: a value or a ReplyFormatError, never a trap.
    @Test func decodersSurviveRandomBytes() {
        var generator = SystemRandomNumberGenerator()
        for layout in allLayouts {
            for _ in 0..<100 {
                let length = Int.random(in: 0...600, using: &generator)
                var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                // Small counts and offsets now and then, so decoding gets past the header.
                if length >= 16, Bool.random(using: &generator) {
                    poke(&bytes, at: 0, UInt64.random(in: 0...8, using: &generator), layout)
                }
                bytes.withUnsafeBytes { payload in
                    _ = try? ReplyDecoder.processPage(payload, layout: layout)
                    _ = try? ReplyDecoder.processDetails(payload, layout: layout)
                    _ = try? ReplyDecoder.heapBounds(payload, layout: layout)
                    _ = try? ReplyDecoder.mappingPage(payload, layout: layout)
                    _ = try? ReplyDecoder.fileDescriptorPage(payload, layout: layout)
                    _ = try? ReplyDecoder.openedFile(payload, layout: layout)
                    _ = try? ReplyDecoder.fileChunk(payload, layout: layout, wanted: 4056)
                    _ = try? ReplyDecoder.closeStatus(payload, layout: layout)
                    _ = ReplyDecoder.string(payload)
                    _ = ReplyDecoder.nulSeparatedStrings(payload)
                    _ = ReplyDecoder.spaceSeparatedArguments(payload)
                    _ = ReplyDecoder.environment(payload)
                }
            }
        }
    }

    @Test(arguments: allLayouts)
    func decodersReadEveryFieldInGuestOrder(layout: GuestLayout) throws {
        // One fd page built by hand: {count 2, total 3}, fd -100 and fd 4, a pool after them.
        var payload = [UInt8](repeating: 0xee, count: 16 + 2 * 16)
        poke(&payload, at: 0, 2, layout)
        poke(&payload, at: 8, 3, layout)
        poke(&payload, at: 16, UInt64(bitPattern: -100), layout)
        poke(&payload, at: 24, 48, layout)
        poke(&payload, at: 32, layout.wordBits == 32 ? 0xffff_ff9c : 4, layout)
        poke(&payload, at: 40, 54, layout)
        payload += Array("/root".utf8) + [0] + Array("a=b".utf8) + [0]
        let page = try payload.withUnsafeBytes { try ReplyDecoder.fileDescriptorPage($0, layout: layout) }
        #expect(page.totalCount == 3)
        #expect(page.records == [FileDescriptor(number: -100, path: "/root"),
                                 FileDescriptor(number: layout.wordBits == 32 ? -100 : 4, path: "a=b")])
        let opened = try (layout.bytes(of: UInt32(bitPattern: -13)) + layout.bytes(of: UInt32(0x0301))
                          + layout.bytes(of: UInt64(0x9fa0))).withUnsafeBytes {
            try ReplyDecoder.openedFile($0, layout: layout)
        }
        #expect(opened == ReplyDecoder.OpenedFile(errno: 13, handle: 0x301, fileSystemMagic: 0x9fa0))
    }
}
