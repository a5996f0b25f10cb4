/* SPDX-License-Identifier: MIT */
/*
 * Promela model of the rtioreq slot protocol and the engine's claims, checked
 * exhaustively by spin (tests/model/run.sh; ctest label `model`).
 *
 * What is modelled (derived from engine/core/engine_pvt.h's label table, poll.c,
 * dispatch.c, engine.c and docs/shm-protocol.md; each step names its label):
 *  - the hypervisor side of one vCPU (docs section 5: H1, the step-4 fence and
 *    polled_mask/need_wakeup loads, U1, the done_seq wait N1/H2, H3);
 *  - the engine's takers: a poller (S2, T1, hybrid idle NW with P2) and the dispatcher
 *    (D1, V2, O2, T1), both serving through rtioreq__serve() (T0, snapshot, T2 CAS) and
 *    rtioreq__complete() (C1, C2, N1);
 *  - VM attach while the dispatcher runs (V1, K1), with a request PENDING before or
 *    during it;
 *  - a control thread handing the slot dispatcher -> poller -> dispatcher (-> poller
 *    with MOVES=3) across RCU grace periods, stopping after any move (vm_place: O1, GP,
 *    polled_mask seq_cst RMW, S1 + P1 / S1 + P1, GP, need_wakeup and polled_mask
 *    cleared, O1 + K1);
 *  - VM clear (L1/L2, the drain bound, the force pass) with a blocking client and two
 *    waiter threads whose completion may come late, claims by generation;
 *  - engine death (kill -9 at any step) and takeover by a second engine that holds the
 *    region's ownership lock (a kernel-maintained liveness: an OFD lock) and completes
 *    the PROCESSING slots the dead engine left.
 *
 * Scenarios (one per spin run, chosen with -D; sizes: -DNREQ (requests, default 2),
 * -DMOVES (2 or 3), -DNCLEAR (clears, default 1); CI checks the defaults):
 *  HANDOVER  hypervisor + poller (hybrid idle) + dispatcher + control (slot moves)
 *  ATTACH    hypervisor + dispatcher + a VM attach
 *  CLEAR     hypervisor + dispatcher + blocking client (2 waiters) + clears
 *  TAKEOVER  hypervisor + engine A (may die at any step) + engine B (attaches after)
 *
 * Properties (spin -a; pan in safety mode, with invalid-end-state checking):
 *  - no lost wake-up / no vCPU left waiting: every state where nothing can move has
 *    every process at an end label; the hypervisor's wait for COMPLETE is not one, so a
 *    vCPU waiting forever (a request nobody will take or complete) is an invalid end
 *    state;
 *  - no request completed twice or into the wrong request: the hypervisor asserts the
 *    value it reads is its own request's (or all ones where a clear or takeover may
 *    complete it), and the engine asserts the slot is PROCESSING whenever it writes
 *    value or COMPLETE;
 *  - no write to a slot the engine does not own: same assertion (FREE, PENDING and
 *    COMPLETE are never written by the engine); only one taker is ever inside
 *    rtioreq__serve() for the slot (the ownership claim of engine_pvt.h).
 *
 * Memory model. Promela is sequentially consistent: each statement is one atomic step
 * and all interleavings are explored. The protocol's Dekker (store -> load) pairs are
 * made sequentially consistent in the code by seq_cst RMWs and fences (NW; the step-4
 * fence against vm_place()'s polled_mask RMW; the dispatcher's fence before a scan), so
 * modelling them as SC steps is faithful. The acquire/release pairs (H1/T1, C2/H2,
 * S1/S2, V1/V2, O1/O2, P1/P2, K1/D1, U1/D1, A1/W1, L1/L2) publish data with a flag; in
 * the model the data is a plain variable written before the flag in program order,
 * which SC preserves. A missing fence is modelled by its effect: the load moves before
 * the store (MUT_HV_NO_FENCE).
 *
 * Futexes: "increment, then FUTEX_WAKE" (U1, K1, P1, N1) against "read the word, check,
 * futex_wait(v)" is modelled as a wait that blocks until the word differs from v: the
 * kernel's compare at wait time plus the wake after every increment give exactly that.
 *
 * RCU (liburcu QSBR): a grace period waits until every online reader (poller,
 * dispatcher) has passed a quiescent state or gone offline after it started (gpw[]).
 *
 * Mutations (run.sh asserts that spin FINDS a counterexample for each):
 *  MUT_DISP_VMSET_FIRST     dispatcher loads its VM set (V2) before its kick word (D1):
 *                           today's order in dispatch.c (issue #14 item 2)
 *  MUT_POLL_SET_BEFORE_WAKE poller sleeps on the set loaded before its wake word (P2):
 *                           today's order in poll.c (issue #14 item 2)
 *  MUT_HV_NO_FENCE          hypervisor loads polled_mask/need_wakeup before H1
 *  MUT_NO_GP                vm_place() hands the slot over without a grace period
 *  MUT_BARE_BIT             a client completion claims by the vCPU bit, not by the
 *                           take's generation (issue #14 item 1)
 *  MUT_NO_TAKEOVER          the new engine acts on PENDING only (issue #9 defect 1)
 *  MUT_NO_LIVENESS          the new engine ignores the live engine's lock (defect 2)
 *
 * The model describes the protocol as the fixes of issues #9 and #14 make it (the
 * poller loads its wake word before its set, the dispatcher its kick word before its VM
 * set; client completions claim by generation; a region has one live engine and a new
 * one completes what a dead one left PROCESSING). The code on main at the time of
 * writing has the mutated orders; see issue #14.
 */

#define PENDING		0
#define COMPLETE	1
#define PROCESSING	2
#define FREE		3
#define ONES		255	/* all ones: value of a cleared, forced or abandoned read */

#define POLLER		0	/* reader / taker ids */
#define DISP		1

#ifndef MOVES
#define MOVES		2	/* HANDOVER: slot moves after attach */
#endif
#ifndef NCLEAR
#define NCLEAR		1	/* CLEAR: clears */
#endif
#ifndef NREQ
#define NREQ		2	/* requests of the vCPU */
#endif

/* ---------------------------------------------------------------------------------- */
/* The shared region: slot 0 of the VM and its channel words */

byte processed = FREE;	/* slot.processed: H1, T1, T2, C2, H2, H3 */
byte req_id;		/* the request's fields (type, addr, ...): the hv's request number */
byte value;		/* slot value field: engine -> hv for reads */
byte upcall_seq;	/* chan.upcall_seq: U1 / D1 */
byte done_seq;		/* chan.done_seq[0]: N1 / hv's acquire load */
bit polled;		/* chan.polled_mask bit 0 (engine, seq_cst RMW) */
bit need_wakeup;	/* chan.need_wakeup bit 0 (NW) */

/* ---------------------------------------------------------------------------------- */
/* Engine-private state (index: engine, for TAKEOVER's two engine processes) */

bit busy[2];		/* slot.busy: T0 / C1 */
byte snap[2];		/* slot.req: the snapshot (read once) */
byte kick;		/* eng.kick: K1 / D1 */
bit vmset;		/* eng.vmset holds the VM: V1 / V2 */
bit fallback;		/* vm.fallback_mask bit 0: O1 / O2 */
bit pset;		/* the poller's set holds the slot: S1 / S2 */
byte pwake;		/* poller.wake: P1 / P2 */
bit pstop, dstop;	/* stop flags (joined: the model only needs them to end) */
bit online[2], gpw[2];	/* RCU: reader online; reader owes the current GP a QS */

/* clear and the blocking client's claim word (CLEAR) */
byte clearing;		/* vm.clearing: L1 / L2 */
#define C_NONE		0
#define C_ASSIGNED	1	/* assigned to the client, not taken (pending bit, A1) */
#define C_TAKEN		2	/* taken by a waiter (inflight bit, W1/W2) */
byte cstate;		/* claim state of the slot's current take */
byte cgen;		/* generation of the slot's current take (its identity) */

/* engine ownership (TAKEOVER): 0 free, 1 engine A, 2 engine B; the kernel drops a dead
 * holder's lock (OFD lock on the region fd) */
byte lock;
bit killA, deadA;

/* ghosts */
byte in_serve;		/* takers inside rtioreq__serve() for the slot */
bit insv[2];		/* engine e has a taker inside it (TAKEOVER: one taker each) */
bit hv_done;
bit ctl_done;
byte fgen;		/* bit g: the force pass completed take g (g < 8) */

/* ---------------------------------------------------------------------------------- */
/* The request path (engine_pvt.h) */

/* rtioreq__complete(): the taker or the request's claimant, engine @e */
inline complete(e, val)
{
	/* value write-back (reads): the slot must be the engine's; then C1 -> T0 (the
	 * hv reads value only after COMPLETE: one step) */
	atomic {
		assert(processed == PROCESSING);
		value = val;
		busy[e] = 0;
		snap[e] = 0	/* the snapshot is dead */
	};
	atomic { assert(processed == PROCESSING); processed = COMPLETE };	/* C2 -> H2 */
	done_seq++		/* N1 (then FUTEX_WAKE), after C2 */
}

/* rtioreq_vm_clear()'s and client destroy's force pass: F1 on the claim word */
inline force(e)
{
	atomic {
		if
		:: cstate != C_NONE -> cstate = C_NONE; fgen = fgen | (1 << cgen); ok = 1
		:: else -> ok = 0
		fi
	};
	if
	:: ok -> complete(e, ONES)
	:: else -> skip
	fi
}

/*
 * rtioreq__serve() by taker @me of engine @e, after its T1 load saw PENDING. What a
 * taken request becomes depends on the scenario: completed inline (a poller's handler,
 * or no client on the dispatcher), completed at once (clearing), or assigned to the
 * blocking client with a new generation.
 */
inline serve(me, e)
{
	atomic {
		if
		:: busy[e] -> ok = 0	/* T0: still owned by an earlier request */
		:: else ->
			ok = 1;
			in_serve++;
			insv[e] = 1;
			assert(in_serve == 1);	/* one taker at a time (ownership, GP) */
			snap[e] = req_id;	/* snapshot: each field read once */
			busy[e] = 1		/* relaxed; published by T2 */
		fi
	};
	if
	:: ok ->
		atomic {		/* T2: CAS PENDING -> PROCESSING */
			if
			:: processed == PENDING -> processed = PROCESSING; ok = 1
			:: else -> ok = 0
			fi
		};
		if
		:: !ok -> busy[e] = 0	/* never taken */
		:: ok ->
#ifdef CLEAR
			if
			:: clearing > 0 -> complete(e, ONES)	/* L2: clearing, at once */
			:: else ->
				/* rtioreq__assign(): a new take identity, then A1 */
				atomic { cgen++; cstate = C_ASSIGNED }
			fi
#else
			complete(e, snap[e])	/* handler inline / no client */
#endif
		fi;
		atomic { in_serve--; insv[e] = 0; ok = 0 }
	:: else -> skip
	fi
}

/* ---------------------------------------------------------------------------------- */
/* RCU */

inline synchronize()
{
#ifndef MUT_NO_GP
	atomic { gpw[POLLER] = online[POLLER]; gpw[DISP] = online[DISP] };
	(gpw[POLLER] == 0 && gpw[DISP] == 0)
#else
	skip
#endif
}

#define quiescent(i)	gpw[i] = 0
#define go_offline(i)	atomic { online[i] = 0; gpw[i] = 0 }
#define go_online(i)	online[i] = 1
/* dead locals are reset (to 0) so that they do not multiply the states */

/* ---------------------------------------------------------------------------------- */
/* Hypervisor side: one vCPU, NREQ synchronous requests, notify mode (docs section 5) */

proctype hv()
{
	byte r = 1, seen;
	bit p, nw, net;

	do
	:: r > NREQ -> break
	:: else ->
		/* step 1 (acquire: FREE), step 2 (fill), H1 -> T1. One step: no engine
		 * reads the fields before it sees PENDING */
#ifndef MUT_HV_NO_FENCE
		atomic { assert(processed == FREE); req_id = r; processed = PENDING };
		/* step 4: seq_cst fence, then both masks */
		p = polled;
		nw = need_wakeup;
#else
		p = polled;			/* no fence: the loads pass the store */
		nw = need_wakeup;
		atomic { assert(processed == FREE); req_id = r; processed = PENDING };
#endif
		if
		:: !p || nw -> upcall_seq++	/* step 5: U1 (then FUTEX_WAKE all) */
		:: else -> skip
		fi;
		atomic { p = 0; nw = 0 };
		/* step 6: done_seq before the state, sleep while it is unchanged */
		do
		:: seen = done_seq;		/* acquire, pairs with N1 */
			if
			:: processed == COMPLETE -> break	/* H2 */
			:: else ->
				/* futex_wait(done_seq, seen). The hypervisor's timed re-check
				 * (the 10 ms safety net) is needed only when an engine died
				 * between C2 and N1; it is modelled as one extra wake-up after
				 * a death, as a general timeout would hide lost wake-ups */
				if
				:: done_seq != seen -> skip
				:: deadA && !net -> net = 1
				fi
			fi
		od;
		/* step 7: read the value, then H3 (one step: the engine writes neither
		 * once the slot is COMPLETE, which the engine's assertions check) */
		atomic {
#if defined(CLEAR) || defined(TAKEOVER)
			assert(value == r || value == ONES);	/* its own value, or all ones */
#else
			assert(value == r);			/* its own request's value */
#endif
			processed = FREE;
			seen = 0;
			r++
		}
	od;
	hv_done = 1
}

/* ---------------------------------------------------------------------------------- */
/* The dispatcher (dispatch.c dispatcher_main / dispatch_scan) of engine @e */

#define DISPATCHER_LOOP(e)							\
	do									\
	:: DISP_LOAD_DOORBELLS;							\
		u0 = upcall_seq;	/* D1: the VM's upcall word (if in vs) */\
		if			/* stop, read after D1 */		\
		:: dstop -> break						\
		:: else -> skip							\
		fi;								\
		/* seq_cst fence, then scan */					\
		fb = fallback;		/* O2: the slot is ours only if set */	\
		if								\
		:: vs && fb && processed == PENDING ->	/* T1 */		\
			serve(DISP, e);						\
			atomic { quiescent(DISP); k0 = 0; u0 = 0; vs = 0; fb = 0 }\
		:: else ->							\
			go_offline(DISP);	/* futex_waitv: kick, upcalls */\
end_dwait:		(kick != k0 || (vs && upcall_seq != u0));		\
			atomic { go_online(DISP); k0 = 0; u0 = 0; vs = 0; fb = 0 }\
		fi								\
	od

#ifndef MUT_DISP_VMSET_FIRST
/* D1 (kick word) before V2 (VM set): a VM attached after D1 changed kick (K1 after
 * V1), so the wait returns at once (the fix of issue #14 item 2) */
#define DISP_LOAD_DOORBELLS	k0 = kick; vs = vmset
#else
#define DISP_LOAD_DOORBELLS	vs = vmset; k0 = kick
#endif

proctype dispatcher()
{
	byte k0, u0;
	bit vs, fb, ok;

end_disp:
	DISPATCHER_LOOP(0)
}

/* ---------------------------------------------------------------------------------- */
/* HANDOVER: a poller in hybrid idle, the dispatcher, and slot moves between them */

#ifdef HANDOVER
proctype poller()
{
	byte w0, u0;
	bit s, cur, pend, ok;

end_poll:
	do
	:: pstop -> break
	:: atomic { !pstop -> s = pset };	/* S2: top of the loop */
		if
		:: s && processed == PENDING ->	/* T1 */
			serve(POLLER, 0);
			atomic { quiescent(POLLER); s = 0 }	/* once per loop */
		:: else ->
			if
			:: atomic { quiescent(POLLER); s = 0 }	/* keep spinning */
			:: /* hybrid idle: spin_ns elapsed (poller_sleep()) */
#ifndef MUT_POLL_SET_BEFORE_WAKE
				w0 = pwake;	/* P2 first: a set change after it bumps wake */
				cur = pset;	/* S2 again, after P2 (fix of #14 item 2) */
#else
				cur = s;	/* the set loaded before P2 (today's poll.c) */
				w0 = pwake;	/* P2 */
#endif
				u0 = upcall_seq;	/* upcall word of the set's channel */
				if
				:: cur -> need_wakeup = 1	/* NW: seq_cst RMW */
				:: else -> skip
				fi;
				/* NW: seq_cst fence, then re-check the set's slots */
				pend = cur && processed == PENDING;
				if
				:: !pend && !pstop ->
					go_offline(POLLER);
end_psleep:				(pwake != w0 || (cur && upcall_seq != u0));
					go_online(POLLER)
				:: else -> skip
				fi;
				/* S2: clear the bits of what it owns now; then the loop
				 * reloads the set (no quiescent state in between) */
				atomic {
					if
					:: pset -> need_wakeup = 0
					:: else -> skip
					fi;
					cur = 0; w0 = 0; u0 = 0; pend = 0; s = 0
				}
			fi
		fi
	od
}

/* vm_place(): dispatcher -> poller */
inline to_poller()
{
	fallback = 0;		/* O1: the dispatcher stops taking the slot */
	synchronize();		/* the dispatcher is out of any scan that saw the bit */
	polled = 1;		/* seq_cst RMW: Dekker pair with the hv's step-4 fence */
	pset = 1;		/* S1: poller_add() publishes the new set */
	pwake++			/* P1: a sleeping poller watches the new set */
}

/* vm_place(): poller -> dispatcher */
inline to_dispatcher()
{
	pset = 0;		/* S1: poller_remove() */
	pwake++;		/* P1 */
	synchronize();		/* the poller is out of any pass over the old set */
	need_wakeup = 0;	/* the old poller no longer sleeps for the slot */
	polled = 0;		/* seq_cst RMW: Dekker pair with the hv's fence */
	fallback = 1;		/* O1 */
	kick++			/* K1: a request left PENDING without an upcall */
}

proctype control()
{
	/* up to MOVES moves; the control thread may stop after any of them, so that
	 * no later move hides a request its taker lost */
	if
	:: goto done
	:: to_poller()
	fi;
	if
	:: goto done
	:: to_dispatcher()
	fi;
#if MOVES > 2
	if
	:: goto done
	:: to_poller()
	fi;
#endif
done:
	ctl_done = 1
}

init
{
	/* registered readers; the VM attached and started: the slot on the dispatcher */
	atomic { online[POLLER] = 1; online[DISP] = 1; fallback = 1; vmset = 1 };
	atomic {
		run hv();
		run poller();
		run dispatcher();
		run control()
	};
	(hv_done && ctl_done);
	/* destroy: stop + P1, stop + K1 */
	pstop = 1;
	pwake++;
	dstop = 1;
	kick++
}
#endif

/* ---------------------------------------------------------------------------------- */
/* ATTACH: a VM attached while the dispatcher runs, with a request PENDING before or
 * during the attach (docs 4.3: served at attach) */

#ifdef ATTACH
proctype attacher()
{
	/* rtioreq_vm_attach(): every slot on the fallback path, then the dispatcher's VM
	 * set (V1, rtioreq__dispatch_publish()) and its doorbell (K1) */
	fallback = 1;
	vmset = 1;		/* V1 */
	kick++;			/* K1 */
	ctl_done = 1
}

init
{
	online[DISP] = 1;
	atomic {
		run hv();
		run dispatcher();
		run attacher()
	};
	(hv_done && ctl_done);
	dstop = 1;
	kick++
}
#endif

/* ---------------------------------------------------------------------------------- */
/* CLEAR: VM clear, forced completion, late completion (claims by generation) */

#ifdef CLEAR
/* An embedder thread of a blocking client: rtioreq_client_wait() then, any time later,
 * rtioreq_client_complete() with the read's value (its request's number). */
proctype waiter()
{
	byte g, mine;
	bit ok;

end_w:
	do
	:: atomic {
		/* client_take(): woken on pending (A1 -> W1), takes the bit, copies the
		 * request and its generation, publishes it in flight (W2). The transit from
		 * pending to inflight is atomic against the force pass (TK in engine_pvt.h),
		 * so it is one step here */
		cstate == C_ASSIGNED -> cstate = C_TAKEN; g = cgen; mine = snap[0]
	   };
		/* the handler's work: any amount of time passes */
		/* rtioreq_client_complete() -> client_finish(): F1, claim by the take */
		atomic {
			if
#ifndef MUT_BARE_BIT
			:: cstate == C_TAKEN && cgen == g -> cstate = C_NONE; ok = 1
#else
			:: cstate == C_TAKEN -> cstate = C_NONE; ok = 1	/* by the bit */
#endif
			:: else -> ok = 0
			fi
		};
		if
		:: ok -> complete(0, mine)
		:: else -> assert(fgen & (1 << g))	/* -ENOENT only for a forced take */
		fi;
		atomic { g = 0; mine = 0; ok = 0 }
	:: hv_done -> break
	od
}

/* rtioreq_vm_clear(vm, timeout) */
proctype clearer()
{
	bit ok;
	byte n;

	do
	:: n == NCLEAR -> break
	:: else ->
		clearing++;	/* L1: requests taken from now on complete at once */
		kick++;		/* K1 */
		/* vm_drain(): wait for idle up to the bound, then force */
		if
		:: busy[0] == 0 -> skip	/* everything finished in time */
		:: skip			/* the bound expired */
		fi;
		force(0);
		clearing--;	/* L1 */
		n++
	od;
	ctl_done = 1
}

init
{
	atomic { online[DISP] = 1; fallback = 1; vmset = 1 };	/* attached, started */
	atomic {
		run hv();
		run dispatcher();
		run waiter();
		run waiter();
		run clearer()
	};
	(hv_done && ctl_done);
	dstop = 1;
	kick++
}
#endif

/* ---------------------------------------------------------------------------------- */
/* TAKEOVER: engine A may be killed at any step; engine B attaches after */

#ifdef TAKEOVER
/* engine A: owns the region, serves through its dispatcher */
proctype engineA()
{
	byte k0, u0;
	bit vs, fb, ok;

	{
end_dispA:
		DISPATCHER_LOOP(0)
	} unless { killA };
	/* kill -9: the process is gone; the kernel releases its lock */
	atomic { lock = 0; deadA = 1; in_serve = in_serve - insv[0]; insv[0] = 0 }
}

proctype killer()
{
	if
	:: killA = 1
	:: skip
	fi
}

/* engine B: attaches once the region has no live engine; completes what the dead one
 * left PROCESSING (counted abandoned, notified), then serves */
proctype engineB()
{
	byte k0, u0;
	bit vs, fb, ok;

end_attach:
#ifndef MUT_NO_LIVENESS
	atomic { lock == 0 -> lock = 2 };	/* EBUSY while A lives; retried */
#else
	skip;					/* takes the region while A may live */
#endif
#ifndef MUT_NO_TAKEOVER
	if
	:: processed == PROCESSING ->		/* left by a dead engine */
		busy[1] = 1;
		complete(1, ONES)		/* abandoned: all ones, notified */
	:: else -> skip
	fi;
#endif
end_dispB:
	DISPATCHER_LOOP(1)
}

init
{
	atomic { fallback = 1; vmset = 1; lock = 1 };	/* engine A attached, holds the lock */
	atomic {
		run hv();
		run engineA();
		run killer();
		run engineB()
	};
	hv_done;
	dstop = 1;
	kick++
}
#endif
