// The syscall layer's own contract: each fault-injection name hits its own call (and only on the arming thread when
// asked), epoll_pwait2 is detected once and ENOSYS/EPERM switch every loop to epoll_wait for good, and epoll_wait's
// millisecond timeout is rounded up so no timer fires early. Serialized: the epoll detection is process-wide.
import CZeroCopyShims
import Glibc
import Synchronization
import Testing
@testable import ZeroCopyReactor

@Suite(.serialized) struct SystemLayerTests {
    // MARK: fault-injection names

    @Test func everySyscallNameIsDistinct() {
        let names = SyscallName.allCases.map(\.rawValue)
        #expect(Set(names).count == names.count)
        #expect(SyscallName.epollPwait2.rawValue == "epoll_pwait2")
        #expect(SyscallName.epollWait.rawValue == "epoll_wait")
        #expect(SyscallName.epollCreate.rawValue == "epoll_create")
    }

    @Test func getsockoptAndSetsockoptFaultSeparately() throws {
        let socket = try Sys.socket(family: AF_INET)
        let fd = socket.raw
        let get = FaultInjection.inject(.errno(EIO), on: .getsockopt, fd: fd)
        defer { FaultInjection.disarm(get) }
        try Sys.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
        #expect(throws: SystemError(errno: EIO, call: "getsockopt")) {
            try Sys.getOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR)
        }
        #expect(FaultInjection.hits(get) == 1)
        #expect(try Sys.getOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR) == 1)

        let set = FaultInjection.inject(.errno(EIO), on: .setsockopt, fd: fd)
        defer { FaultInjection.disarm(set) }
        #expect(try Sys.getOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR) == 1)
        #expect(throws: SystemError(errno: EIO, call: "setsockopt")) {
            try Sys.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 0)
        }
        #expect(FaultInjection.hits(set) == 1)
        #expect(FaultInjection.hits(get) == 1)
    }

    /// A fault scoped to a descriptor dies with it. Otherwise a fault a test left partly unused would hit whichever
    /// socket reuses the number next, in a test running in parallel (an EAGAIN left on one test's send once turned
    /// another test's one-byte echo into an EPOLLOUT wait). The number is asked of the fault table directly: a
    /// syscall on a closed number could reach another test's socket.
    @Test func aFaultOnADescriptorRetiresWhenTheDescriptorCloses() throws {
        let socket = try Sys.socket(family: AF_INET)
        let fd = socket.raw
        let fault = FaultInjection.inject(.errno(EIO), on: .getsockopt, fd: fd, times: 3)
        defer { FaultInjection.disarm(fault) }
        #expect(throws: SystemError(errno: EIO, call: "getsockopt")) {
            try Sys.getOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR)
        }
        #expect(FaultInjection.check(.getsockopt, fd: fd) == .errno(EIO))
        socket.close()
        #expect(FaultInjection.check(.getsockopt, fd: fd) == nil)
        #expect(FaultInjection.hits(fault) == 2)
    }

    @Test func getsocknameAndBindFaultSeparately() throws {
        let socket = try Sys.socket(family: AF_INET)
        let fd = socket.raw
        let name = FaultInjection.inject(.errno(ENOBUFS), on: .getsockname, fd: fd)
        defer { FaultInjection.disarm(name) }
        try Sys.bind(fd, try SocketAddress(host: "127.0.0.1", port: 0))
        #expect(throws: SystemError(errno: ENOBUFS, call: "getsockname")) { try Sys.localAddress(fd) }
        #expect(FaultInjection.hits(name) == 1)

        let bind = FaultInjection.inject(.errno(EADDRINUSE), on: .bind, fd: fd)
        defer { FaultInjection.disarm(bind) }
        let bound = try Sys.localAddress(fd)
        #expect(bound.port != 0)
        #expect(FaultInjection.hits(bind) == 0)
    }

    /// epoll_create and epoll_ctl both run on the thread that creates the pool (EventLoop.init), with no descriptor
    /// to scope a fault to: a fault armed for this thread only hits them here and nowhere else in the process.
    @Test func epollCreateAndEpollCtlFaultSeparatelyInsidePoolStart() throws {
        let create = FaultInjection.inject(.errno(EMFILE), on: .epollCreate, onThisThread: true)
        #expect(throws: ReactorError.system(SystemError(errno: EMFILE, call: "epoll_create"))) {
            _ = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        }
        #expect(FaultInjection.hits(create) == 1)
        FaultInjection.disarm(create)

        let control = FaultInjection.inject(.errno(ENOMEM), on: .epollCtl, onThisThread: true)
        #expect(throws: ReactorError.system(SystemError(errno: ENOMEM, call: "epoll_ctl"))) {
            _ = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        }
        #expect(FaultInjection.hits(control) == 1)
        FaultInjection.disarm(control)
    }

    @Test func aFaultForThisThreadDoesNotHitAnotherThread() throws {
        let fault = FaultInjection.inject(.errno(EMFILE), on: .socket, onThisThread: true, times: 2)
        defer { FaultInjection.disarm(fault) }
        let elsewhere = Box<Bool>()
        runThread { elsewhere.set((try? Sys.socket(family: AF_INET)) != nil) }
        #expect(elsewhere.wait() == true)
        #expect(FaultInjection.hits(fault) == 0)
        #expect(throws: SystemError(errno: EMFILE, call: "socket")) { _ = try Sys.socket(family: AF_INET) }
        #expect(FaultInjection.hits(fault) == 1)
    }

    // MARK: epoll_pwait2 detection

    @Test(arguments: [
        (-1, -1), (Int64.min, -1), (0, 0), (1, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2),
        (2_500_000, 3), (5_000_000_000, 5000), (Int64.max, Int32.max),
    ] as [(Int64, Int32)])
    func epollWaitTimeoutsRoundUpToWholeMilliseconds(nanos: Int64, milliseconds: Int32) {
        #expect(Sys.epollMilliseconds(nanos) == milliseconds)
    }

    /// An epoll instance with one eventfd registered (data 7), for driving `Sys.epollWait` directly.
    final class Instance {
        let epoll: FileDescriptor
        let wake: FileDescriptor
        let events = UnsafeMutableBufferPointer<zcr_epoll_event>.allocate(capacity: 8)

        init() throws {
            epoll = try Sys.epollCreate()
            wake = try Sys.eventfd()
            try Sys.epollControl(epoll.raw, Epoll.add, wake.raw, events: Epoll.input, data: 7)
        }

        deinit { events.deallocate() }

        func wait(_ nanos: Int64) throws -> Int { try Sys.epollWait(epoll.raw, events, timeoutNanos: nanos) }
    }

    @Test(arguments: [ENOSYS, EPERM])
    func enosysOrEpermFromEpollPwait2SwitchesToEpollWaitWithinTheSameCall(errno: Int32) throws {
        Sys.resetEpollDetection()
        defer { Sys.resetEpollDetection() }
        let instance = try Instance()
        let fault = FaultInjection.inject(.errno(errno), on: .epollPwait2, fd: instance.epoll.raw, times: Int.max)
        defer { FaultInjection.disarm(fault) }

        Sys.eventfdWrite(instance.wake.raw)
        #expect(try instance.wait(-1) == 1)  // epoll_wait(-1) took over within the same call
        #expect(instance.events[0].data == 7)
        #expect(Sys.epollWaitFlavor == .plain)
        #expect(FaultInjection.hits(fault) == 1)

        // Sticky: later waits go straight to epoll_wait. A 1 ns timeout waits a whole millisecond, never less.
        Sys.eventfdDrain(instance.wake.raw)
        let start = EventLoop.now()
        #expect(try instance.wait(1) == 0)
        #expect(EventLoop.now() - start >= 1_000_000)
        #expect(try instance.wait(0) == 0)
        #expect(FaultInjection.hits(fault) == 1)
        #expect(Sys.epollWaitFlavor == .plain)
    }

    @Test func otherEpollPwait2ErrorsAreThrownAndDoNotSwitch() throws {
        Sys.resetEpollDetection()
        defer { Sys.resetEpollDetection() }
        let instance = try Instance()
        let fault = FaultInjection.inject(.errno(EINVAL), on: .epollPwait2, fd: instance.epoll.raw)
        defer { FaultInjection.disarm(fault) }
        #expect(throws: SystemError(errno: EINVAL, call: "epoll_pwait2")) { try instance.wait(0) }
        #expect(Sys.epollWaitFlavor != .plain)
        Sys.eventfdWrite(instance.wake.raw)
        #expect(try instance.wait(-1) == 1)
        #expect(Sys.epollWaitFlavor == .pwait2)
    }

    /// What Linux < 5.11 looks like to the whole pool: ENOSYS from every epoll_pwait2 in the process. The loops start,
    /// echo, and a loop timer fires at or after its deadline (never early), in deadline order.
    @Test func aPoolRunsOnEpollWaitWhenEpollPwait2IsMissing() throws {
        Sys.resetEpollDetection()
        let fault = FaultInjection.inject(.errno(ENOSYS), on: .epollPwait2, times: Int.max)
        defer {
            FaultInjection.disarm(fault)
            Sys.resetEpollDetection()
        }
        let (pool, address) = try makeServer(loops: 2) { _ in EchoHandler() }
        defer { pool.shutdown() }

        var random = TestRandom(seed: 11)
        let data = random.bytes(200_000)
        let peer = try RawPeer(connectingTo: address)
        let reader = Box<[UInt8]>()
        runThread { reader.set(peer.read(exactly: data.count)) }
        peer.send(data)
        #expect(reader.wait() == data)
        #expect(Sys.epollWaitFlavor == .plain)
        #expect(FaultInjection.hits(fault) >= 1)

        // Two timers 0.3 ms apart, neither on a whole millisecond, scheduled latest first.
        let loop = pool.loops[0]
        let fired = Box<[(deadline: UInt64, at: UInt64)]>()
        loop.execute {
            let first = EventLoop.now() + 3_000_500
            let second = first + 300_000
            let log = Locked<[(deadline: UInt64, at: UInt64)]>([])
            loop.scheduleTimer(at: second) {
                log.withLock { $0.append((second, EventLoop.now())) }
                fired.set(log.withLock { $0 })
            }
            loop.scheduleTimer(at: first) { log.withLock { $0.append((first, EventLoop.now())) } }
        }
        let runs = try #require(fired.wait())
        #expect(runs.count == 2)
        #expect(runs.map(\.deadline) == runs.map(\.deadline).sorted())
        for run in runs { #expect(run.at >= run.deadline, "fired \(run.deadline - run.at) ns early") }
    }
}
