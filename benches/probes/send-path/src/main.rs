//! `send-path-probe MODE RECIPIENTS ROUNDS RATE`: writes ROUNDS rounds of one
//! 150-byte frame to each of RECIPIENTS loopback TCP connections, RATE rounds a
//! second (0: as fast as it can), from core 0, while a reader on core 1 reads
//! everything through epoll, as a chat server's fan-out and its clients would. It
//! prints the writer's and the reader's CPU per delivery (their threads' own
//! clocks: the loopback's delivery to the reader is charged to the writer, as it
//! is to a server) and how often the reader woke per round.
//!
//! MODE is `send` (one `send` a socket, back to back), `spread` (the same with
//! 1.5 µs of the writer's own work between sends, about what a runtime spends
//! waking and polling one connection's task) or `uring` (the round's sends pushed
//! to an io_uring and submitted in one call).
#![deny(unsafe_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rustix::event::epoll;
use rustix::thread::{CpuSet, sched_setaffinity};
use rustix::time::{ClockId, clock_gettime};

const FRAME: usize = 150;

fn pin(core: usize) {
    let mut set = CpuSet::new();
    set.set(core);
    sched_setaffinity(None, &set).expect("pin to a core");
}

/// The calling thread's CPU time.
fn cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: send-path-probe send|spread|uring RECIPIENTS ROUNDS RATE");
        std::process::exit(2)
    };
    let [_, mode, n, rounds, rate] = &args[..] else { usage() };
    let (Ok(n), Ok(rounds), Ok(rate)) = (n.parse::<usize>(), rounds.parse(), rate.parse::<f64>())
    else {
        usage()
    };
    if !["send", "spread", "uring"].contains(&mode.as_str()) || n == 0 {
        usage()
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (mut writers, mut readers) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let w = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (r, _) = listener.accept().expect("accept");
        w.set_nodelay(true).expect("nodelay");
        r.set_nonblocking(true).expect("nonblocking");
        writers.push(w);
        readers.push(r);
    }
    let expected = (n * rounds * FRAME) as u64;
    let reader = std::thread::spawn(move || read_all(readers, expected));
    pin(0);
    let frame = [b'x'; FRAME];
    let mut ring = io_uring::IoUring::new(n.next_power_of_two() as u32).expect("io_uring");
    let start = Instant::now();
    let mut spent = Duration::ZERO;
    for round in 0..rounds {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(round as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let before = cpu();
        if mode == "uring" {
            submit_round(&mut ring, &writers, &frame);
        } else {
            for w in &writers {
                let sent = rustix::net::send(w, &frame, rustix::net::SendFlags::empty());
                assert_eq!(sent.expect("send"), FRAME, "a short send on an idle socket");
                if mode == "spread" {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_nanos(1500) {}
                }
            }
        }
        spent += cpu() - before;
    }
    let (wakes, read_cpu) = reader.join().expect("reader");
    let deliveries = (n * rounds) as f64;
    println!(
        "{mode} recipients={n} rounds={rounds} rate={rate}: writer {:.2} µs/delivery, \
         reader {:.2} µs/delivery, reader woke {:.2} times/round",
        spent.as_secs_f64() * 1e6 / deliveries,
        read_cpu.as_secs_f64() * 1e6 / deliveries,
        wakes as f64 / rounds as f64
    );
}

/// One send per writer, pushed to the ring and submitted in one call; waits for
/// every completion and checks each sent the whole frame.
fn submit_round(ring: &mut io_uring::IoUring, writers: &[TcpStream], frame: &[u8; FRAME]) {
    {
        let mut sq = ring.submission();
        for w in writers {
            let fd = io_uring::types::Fd(w.as_raw_fd());
            let entry = io_uring::opcode::Send::new(fd, frame.as_ptr(), FRAME as u32).build();
            // SAFETY: the entry points at `frame` and at a socket of `writers`, both
            // borrowed for this whole call, which does not return before every
            // entry has completed (`submit_and_wait` for all of them, below).
            #[allow(unsafe_code)]
            unsafe { sq.push(&entry) }.expect("the ring holds a round");
        }
    }
    ring.submit_and_wait(writers.len()).expect("submit");
    let mut done = 0;
    for c in ring.completion() {
        assert_eq!(c.result(), FRAME as i32, "a short or failed send");
        done += 1;
    }
    assert_eq!(done, writers.len());
}

/// Reads until `expected` bytes came, on core 1; returns how many times epoll
/// woke it and its CPU time.
fn read_all(readers: Vec<TcpStream>, expected: u64) -> (u64, Duration) {
    pin(1);
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll");
    for (i, r) in readers.iter().enumerate() {
        epoll::add(&ep, r, epoll::EventData::new_u64(i as u64), epoll::EventFlags::IN)
            .expect("epoll add");
    }
    let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
    let mut buf = vec![0u8; 1 << 16];
    let (mut got, mut wakes) = (0u64, 0u64);
    let timeout = rustix::time::Timespec { tv_sec: 10, tv_nsec: 0 };
    while got < expected {
        events.clear();
        epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), Some(&timeout))
            .expect("epoll wait");
        assert!(!events.is_empty(), "nothing arrived for 10 s");
        wakes += 1;
        for e in &events {
            let mut r = &readers[e.data.u64() as usize];
            while let Ok(m @ 1..) = r.read(&mut buf) {
                got += m as u64;
            }
        }
    }
    (wakes, cpu())
}
