// SPDX-License-Identifier: MIT
/*
 * The shared-memory protocol across processes: region validation, and the engine
 * serving a region created by a simulated hypervisor in a forked child, in polling
 * and notify mode, including requests left PENDING before the engine attached; one
 * live engine per region, and the takeover of what a dead engine left.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static void region_name(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "/rtioreq-test-%s-%d", tag, (int)getpid());
}

static void test_region_validation(void **state)
{
	struct rtioreq_shm s, t;
	char name[64];
	int fd;

	region_name(name, sizeof(name), "val");
	assert_int_equal(rtioreq_shm_create(&s, "noslash", 1), -EINVAL);
	assert_int_equal(rtioreq_shm_create(&s, "/a/b", 1), -EINVAL);
	assert_int_equal(rtioreq_shm_create(&s, name, 0), -EINVAL);
	assert_int_equal(rtioreq_shm_create(&s, name, 17), -EINVAL);
	assert_int_equal(rtioreq_shm_open(&s, name), -ENOENT);
	assert_int_equal(rtioreq_shm_create(&s, name, 16), 0);
	assert_int_equal(rtioreq_shm_create(&t, name, 16), -EEXIST);
	for (int v = 0; v < 16; v++)
		assert_int_equal(s.region->page.req_slot[v].processed, RTIOREQ_STATE_FREE);
	assert_int_equal(rtioreq_shm_open(&t, name), 0);
	assert_int_equal(t.region->chan.vcpu_num, 16);
	/* a corrupted header is refused */
	s.region->chan.magic = 0xdeadbeef;
	rtioreq_shm_close(&t);
	assert_int_equal(rtioreq_shm_open(&t, name), -EINVAL);
	rtioreq_shm_close(&s);
	assert_int_equal(rtioreq_shm_open(&t, name), -ENOENT); /* creator unlinked it */
	/* a shared object of the wrong size is not a region */
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_int_equal(rtioreq_shm_open(&t, name), -EINVAL);
	close(fd);
	shm_unlink(name);
}

/* A region half created is "not yet" (-EAGAIN), a bad one names its cause. */
static void test_region_half_created(void **state)
{
	struct rtioreq_shm t;
	struct rtioreq_shm_region *r;
	char name[64];
	int fd;

	region_name(name, sizeof(name), "half");
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(rtioreq_shm_open(&t, name), -EAGAIN); /* size 0: not sized yet */
	assert_int_equal(ftruncate(fd, sizeof(*r)), 0);
	r = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(r != MAP_FAILED);
	assert_int_equal(rtioreq_shm_open(&t, name), -EAGAIN); /* no magic yet */
	assert_non_null(strstr(t.why, "magic"));
	r->chan.version = RTIOREQ_CHAN_VERSION;
	r->chan.vcpu_num = 17;
	r->chan.magic = RTIOREQ_CHAN_MAGIC;
	assert_int_equal(rtioreq_shm_open(&t, name), -EINVAL);
	assert_non_null(strstr(t.why, "vcpu_num 17"));
	r->chan.vcpu_num = 4;
	r->chan.version = 1; /* a version 1 engine never took the owner lock */
	assert_int_equal(rtioreq_shm_open(&t, name), -EINVAL);
	assert_non_null(strstr(t.why, "version 1"));
	munmap(r, sizeof(*r));
	close(fd);
	shm_unlink(name);
}

/*
 * One live engine per region: a second claim is EBUSY naming the holder; a clean close
 * frees it; an engine that dies without detaching leaves its pid in the owner word
 * under a free lock, and the next one completes what it left PROCESSING (abandoned)
 * and re-notifies what it left COMPLETE.
 */
static void test_region_owner_takeover(void **state)
{
	const struct rtioreq_hv_req rd = { .type = RTIOREQ_TYPE_PORTIO, .dir = RTIOREQ_DIR_READ,
					   .addr = 0x5f0, .size = 2 };
	const struct rtioreq_hv_req wr = { .type = RTIOREQ_TYPE_MMIO, .dir = RTIOREQ_DIR_WRITE,
					   .addr = 0x1000, .size = 8, .value = 0x1122334455667788 };
	struct rtioreq_shm s, e1, e2;
	struct rtioreq_engine *eng;
	struct rtioreq_vm_stats st;
	struct rtioreq_vm *vm;
	uint32_t d0, d1, d2;
	char name[64];
	pid_t pid, who;
	int status;

	region_name(name, sizeof(name), "own");
	assert_int_equal(rtioreq_shm_create(&s, name, 4), 0);
	assert_int_equal(rtioreq_hv_engine(&s, &who), RTIOREQ_HV_ENGINE_NONE);
	assert_int_equal(rtioreq_shm_open(&e1, name), 0);
	assert_int_equal(e1.stale_owner, 0);
	assert_int_equal(rtioreq_hv_engine(&s, &who), RTIOREQ_HV_ENGINE_ALIVE);
	assert_int_equal(who, getpid());
	assert_int_equal(rtioreq_shm_open(&e2, name), -EBUSY); /* even from this process */
	assert_int_equal(e2.holder, getpid());
	assert_int_equal(rtioreq_shm_open_fd(&e2, s.fd), -EBUSY); /* the creator's fd too */
	rtioreq_shm_close(&e1);
	assert_int_equal(s.region->chan.owner.word, 0);
	assert_int_equal(rtioreq_hv_engine(&s, &who), RTIOREQ_HV_ENGINE_NONE);

	/* an engine that dies holding the region, with requests taken */
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		_exit(rtioreq_shm_open(&e1, name) ? 1 : 0); /* no close: "killed" */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(rtioreq_hv_engine(&s, &who), RTIOREQ_HV_ENGINE_DEAD);
	assert_int_equal(who, pid);
	/* what it left: slot 0 a notified read and slot 2 a spun-on write, both taken
	 * (PROCESSING); slot 1 COMPLETE, maybe without its notification */
	assert_true(rtioreq_hv_submit(s.region, 0, &rd, false, false) >= 0);
	assert_true(rtioreq_hv_submit(s.region, 2, &wr, true, false) >= 0);
	s.region->page.req_slot[0].processed = RTIOREQ_STATE_PROCESSING;
	s.region->page.req_slot[2].processed = RTIOREQ_STATE_PROCESSING;
	s.region->page.req_slot[1].processed = RTIOREQ_STATE_COMPLETE;
	d0 = rtioreq_hv_done_seq(s.region, 0);
	d1 = rtioreq_hv_done_seq(s.region, 1);
	d2 = rtioreq_hv_done_seq(s.region, 2);

	assert_int_equal(rtioreq_shm_open(&e2, name), 0);
	assert_int_equal(e2.stale_owner, pid);
	assert_int_equal(rtioreq_hv_engine(&s, &who), RTIOREQ_HV_ENGINE_ALIVE);
	assert_int_equal(who, getpid());
	eng = rtioreq_engine_create(NULL);
	assert_non_null(eng);
	vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){
					    .id = 1, .vcpu_num = 4, .page = &e2.region->page,
					    .chan = &e2.region->chan, .paused = true,
					    .takeover = true });
	assert_non_null(vm);
	/* completed at attach, before any taker runs (the VM is still paused) */
	assert_int_equal(s.region->page.req_slot[0].processed, RTIOREQ_STATE_COMPLETE);
	assert_int_equal(s.region->page.req_slot[0].reqs.pio_request.value, 0xffff);
	assert_int_equal(rtioreq_hv_done_seq(s.region, 0), d0 + 1);
	assert_int_equal(s.region->page.req_slot[2].processed, RTIOREQ_STATE_COMPLETE);
	assert_int_equal(s.region->page.req_slot[2].reqs.mmio_request.value, wr.value);
	assert_int_equal(rtioreq_hv_done_seq(s.region, 2), d2); /* it spins: no notification */
	assert_int_equal(rtioreq_hv_done_seq(s.region, 1), d1 + 1);
	assert_int_equal(s.region->page.req_slot[3].processed, RTIOREQ_STATE_FREE);
	rtioreq_vm_stats(vm, &st);
	assert_int_equal(st.abandoned, 2);
	assert_int_equal(st.completed, 2);
	assert_int_equal(st.dispatched, 0);
	assert_int_equal(st.notified, 1);
	/* a request PENDING now is served once started; the final counters include the
	 * detach sweep */
	for (uint16_t v = 0; v < 3; v++)
		rtioreq_hv_release(s.region, v);
	assert_int_equal(rtioreq_hv_submit(s.region, 3, &rd, true, false), 1);
	assert_int_equal(rtioreq_vm_detach_stats(vm, &st), 0);
	assert_int_equal(s.region->page.req_slot[3].processed, RTIOREQ_STATE_COMPLETE);
	assert_int_equal(st.completed, 3);
	assert_int_equal(st.cleared, 1);
	rtioreq_engine_destroy(eng);
	rtioreq_shm_close(&e2);
	assert_int_equal(rtioreq_hv_engine(&s, &who), RTIOREQ_HV_ENGINE_NONE);
	rtioreq_shm_close(&s);
}

struct child_report {
	int rc;
	uint64_t early_value;
	struct rtioreq_sim_result res;
};

/*
 * Child: the hypervisor. Creates the region, leaves one request PENDING on vCPU 0,
 * says ready, waits for go, then checks that request and runs the workload.
 */
static void child_hypervisor(const char *name, bool polling, int ready_w, int go_r, int out_w)
{
	struct child_report *rep = calloc(1, sizeof(*rep));
	struct rtioreq_exdev_oracle *o = calloc(1, sizeof(*o));
	struct rtioreq_hv_req q = {
		.type = RTIOREQ_TYPE_PORTIO, .dir = RTIOREQ_DIR_READ,
		.addr = RTIOREQ_EXDEV_UNMAPPED_PORT, .size = 2
	};
	struct rtioreq_shm s;
	uint32_t seen[16] = { 0 };
	char c = 'r';
	uint64_t end;

	rep->rc = rtioreq_shm_create(&s, name, 8);
	if (!rep->rc) {
		seen[0] = rtioreq_hv_done_seq(s.region, 0);
		rtioreq_hv_submit(s.region, 0, &q, false, true); /* nobody serves it yet */
	}
	if (write(ready_w, &c, 1) != 1 || read(go_r, &c, 1) != 1)
		rep->rc = -EPIPE;
	end = h_now_ns() + 5000000000ull;
	while (!rep->rc && !rtioreq_hv_poll(s.region, 0, q.type, &rep->early_value)) {
		if (h_now_ns() > end) {
			rep->rc = -ETIMEDOUT;
			break;
		}
		rtioreq_hv_wait(s.region, 1, seen, 10000000);
	}
	if (!rep->rc) {
		struct rtioreq_sim_attr sa = {
			.region = s.region, .vcpu_num = 8, .producers = 1, .requests = 200000,
			.completion_polling = polling, .producer_cpu = { -1, -1, -1, -1 },
			.wl = { rtioreq_exdev_gen, o }
		};

		rtioreq_hv_release(s.region, 0);
		rtioreq_exdev_oracle_init(o, 5, 5);
		rep->rc = rtioreq_sim_run(&sa, &rep->res);
	}
	if (write(out_w, rep, sizeof(*rep)) != (ssize_t)sizeof(*rep))
		_exit(3);
	rtioreq_shm_close(&s);
	_exit(0);
}

static void cross_process(bool polling)
{
	struct child_report *rep = calloc(1, sizeof(*rep));
	struct rtioreq_exdev *dev = calloc(1, sizeof(*dev));
	struct rtioreq_poller *p = NULL;
	struct rtioreq_engine *eng;
	struct rtioreq_vm_stats st;
	struct rtioreq_vm *vm;
	struct rtioreq_shm s;
	int ready[2], go[2], out[2], status;
	size_t got = 0;
	char name[64], c = 'g';
	pid_t pid;

	region_name(name, sizeof(name), polling ? "poll" : "notify");
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(out), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* a fresh process image: the hypervisor shares nothing but the region */
		char fds[3][16];

		snprintf(fds[0], sizeof(fds[0]), "%d", ready[1]);
		snprintf(fds[1], sizeof(fds[1]), "%d", go[0]);
		snprintf(fds[2], sizeof(fds[2]), "%d", out[1]);
		execl("/proc/self/exe", "test_shm", "--hypervisor", name, polling ? "1" : "0",
		      fds[0], fds[1], fds[2], (char *)NULL);
		_exit(127);
	}
	close(ready[1]);
	close(go[0]);
	close(out[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(rtioreq_shm_open(&s, name), 0);
	eng = rtioreq_engine_create(NULL);
	assert_non_null(eng);
	vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){
					    .id = 3, .vcpu_num = (uint16_t)s.region->chan.vcpu_num,
					    .page = &s.region->page, .chan = &s.region->chan });
	assert_non_null(vm);
	assert_int_equal(rtioreq_exdev_attach(dev, vm), 0);
	if (polling) {
		p = rtioreq_poller_create(eng, &(struct rtioreq_thread_attr){ .cpu = -1 });
		assert_non_null(p);
		for (uint16_t v = 0; v < 8; v++)
			assert_int_equal(rtioreq_vm_set_poller(vm, v, p), 0);
	}
	assert_int_equal(write(go[1], &c, 1), 1);
	while (got < sizeof(*rep)) {
		ssize_t n = read(out[0], (char *)rep + got, sizeof(*rep) - got);

		assert_true(n > 0);
		got += (size_t)n;
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(rep->rc, 0);
	assert_int_equal(rep->early_value, 0xffff); /* served at attach, unclaimed */
	assert_int_equal(rep->res.requests, 200000);
	assert_int_equal(rep->res.completed, 200000);
	assert_int_equal(rep->res.lost, 0);
	assert_int_equal(rep->res.duplicated, 0);
	assert_int_equal(rep->res.mismatched, 0);
	if (polling)
		assert_int_equal(rep->res.upcalls, 0); /* every slot polled: no upcall */
	else
		assert_true(rep->res.upcalls > 0);
	rtioreq_vm_stats(vm, &st);
	assert_int_equal(st.completed, 200001);
	assert_int_equal(st.polled + st.fallback, 200001);
	assert_true((polling ? st.polled : st.fallback) >= 200000);
	print_message("%s across processes: 200000 requests, p50 %lu ns, upcalls %lu\n",
		      polling ? "polling" : "notify",
		      (unsigned long)rtioreq_hist_percentile(&rep->res.rtt, 50),
		      (unsigned long)rep->res.upcalls);
	rtioreq_engine_destroy(eng);
	rtioreq_shm_close(&s);
	close(ready[0]);
	close(go[1]);
	close(out[0]);
	free(rep);
	free(dev);
}

static void test_cross_process_polling(void **state)
{
	cross_process(true);
}

static void test_cross_process_notify(void **state)
{
	cross_process(false);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_region_validation),
		cmocka_unit_test(test_region_half_created),
		cmocka_unit_test(test_region_owner_takeover),
		cmocka_unit_test(test_cross_process_polling),
		cmocka_unit_test(test_cross_process_notify),
	};

	if (argc == 7 && !strcmp(argv[1], "--hypervisor"))
		child_hypervisor(argv[2], argv[3][0] == '1', atoi(argv[4]), atoi(argv[5]),
				 atoi(argv[6]));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
