/*
 * mlx5-reader: a stand-in for the monitoring agent of the mlx5 reboot use-after-free.
 *
 * It opens each selected sysfs attribute (default: "speed" of every mlx5 port) ONCE, keeps the
 * descriptors open, and re-reads them with pread(fd, buf, n, 0) in a tight loop from several threads,
 * so that a read is in flight whenever the driver tears the function down. Reads and errors are counted
 * per file; a one-line JSON summary goes to stdout at the end (SIGTERM, SIGINT, SIGHUP, -d expiry).
 *
 * Build: gcc -static -O2 -pthread -o mlx5-reader mlx5-reader.c
 *
 * Exit status: 0 normally, 2 for bad usage, 3 if no file could be opened.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 256
#define MAX_THREADS 256
#define MAX_ATTRS 16
#define VALUE_LEN 64

enum err_class { E_NODEV, E_NOENT, E_INVAL, E_OTHER, E_CLASSES };
static const char *const class_name[E_CLASSES] = { "ENODEV", "ENOENT", "EINVAL", "other" };

struct target {
	char path[PATH_MAX];
	int fd;          /* -1 if the open failed */
	int open_errno;  /* errno of the failed open */
	int last_other;  /* errno of the most recent "other" error (racy, informative) */
	char last[VALUE_LEN]; /* last successfully read value, trimmed (written by thread 0 only) */
};

/* Counters are owned by one thread each and read (relaxed) by the reporter: no shared cache lines. */
struct counts {
	uint64_t reads[MAX_FILES];
	uint64_t errors[MAX_FILES][E_CLASSES];
	uint64_t first_error_ns; /* CLOCK_MONOTONIC of this thread's first error, 0 if none */
} __attribute__((aligned(64)));

static struct target targets[MAX_FILES];
static int ntargets;
static struct counts *counts;
static int nthreads = 4;
static volatile int stop;
static int finished_threads;
static uint64_t start_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static enum err_class classify(int err)
{
	switch (err) {
	case ENODEV: return E_NODEV;
	case ENOENT: return E_NOENT;
	case EINVAL: return E_INVAL;
	default: return E_OTHER;
	}
}

static void add(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void *reader_thread(void *arg)
{
	int id = (int)(intptr_t)arg;
	struct counts *c = &counts[id];
	char buf[VALUE_LEN];

	while (!stop) {
		for (int i = 0; i < ntargets && !stop; i++) {
			struct target *t = &targets[i];

			if (t->fd < 0)
				continue;
			ssize_t n = pread(t->fd, buf, sizeof(buf) - 1, 0);
			if (n >= 0) {
				add(&c->reads[i], 1);
				if (id == 0) {
					while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
						n--;
					buf[n] = 0;
					memcpy(t->last, buf, (size_t)n + 1);
				}
			} else if (errno != EINTR) {
				enum err_class k = classify(errno);

				if (k == E_OTHER)
					t->last_other = errno;
				if (!c->first_error_ns)
					__atomic_store_n(&c->first_error_ns, now_ns(), __ATOMIC_RELAXED);
				add(&c->errors[i][k], 1);
			}
		}
	}
	__atomic_add_fetch(&finished_threads, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* --- target selection ------------------------------------------------------------------------- */

static int add_target(const char *path)
{
	if (ntargets >= MAX_FILES) {
		fprintf(stderr, "mlx5-reader: too many files (max %d)\n", MAX_FILES);
		return -1;
	}
	struct target *t = &targets[ntargets++];

	snprintf(t->path, sizeof(t->path), "%s", path);
	t->fd = -1;
	return 0;
}

static int add_interface(const char *netdir, const char *ifname, char attrs[][32], int nattrs)
{
	char path[PATH_MAX];

	for (int a = 0; a < nattrs; a++) {
		snprintf(path, sizeof(path), "%s/%s/%s", netdir, ifname, attrs[a]);
		if (add_target(path))
			return -1;
	}
	return 0;
}

static int is_mlx5(const char *netdir, const char *ifname)
{
	char link[PATH_MAX], dest[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "%s/%s/device/driver", netdir, ifname);
	n = readlink(link, dest, sizeof(dest) - 1);
	if (n < 0)
		return 0;
	dest[n] = 0;
	const char *base = strrchr(dest, '/');

	return strcmp(base ? base + 1 : dest, "mlx5_core") == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every interface in netdir whose device is bound to mlx5_core, in name order. */
static int discover(const char *netdir, char attrs[][32], int nattrs)
{
	DIR *d = opendir(netdir);
	char *names[MAX_FILES];
	int n = 0, rc = 0;
	struct dirent *e;

	if (!d) {
		fprintf(stderr, "mlx5-reader: %s: %s\n", netdir, strerror(errno));
		return 0;
	}
	while ((e = readdir(d)) && n < MAX_FILES) {
		if (e->d_name[0] == '.' || !is_mlx5(netdir, e->d_name))
			continue;
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
	for (int i = 0; i < n; i++) {
		if (!rc && add_interface(netdir, names[i], attrs, nattrs))
			rc = -1;
		free(names[i]);
	}
	return rc ? -1 : n;
}

/* --- output ---------------------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static const char *errno_name(int err)
{
	switch (err) {
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ENODEV: return "ENODEV";
	case ENXIO: return "ENXIO";
	case EINVAL: return "EINVAL";
	case EIO: return "EIO";
	case EISDIR: return "EISDIR";
	case ESRCH: return "ESRCH";
	case ENOTDIR: return "ENOTDIR";
	case EAGAIN: return "EAGAIN";
	case EBUSY: return "EBUSY";
	case ENOLINK: return "ENOLINK";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ESPIPE: return "ESPIPE";
	default: return NULL;
	}
}

static void json_errno(FILE *f, int err)
{
	const char *name = errno_name(err);

	if (name)
		json_string(f, name);
	else
		fprintf(f, "\"errno %d\"", err);
}

static void sum_file(int i, uint64_t *reads, uint64_t errs[E_CLASSES])
{
	*reads = 0;
	memset(errs, 0, sizeof(uint64_t) * E_CLASSES);
	for (int t = 0; t < nthreads; t++) {
		*reads += get(&counts[t].reads[i]);
		for (int k = 0; k < E_CLASSES; k++)
			errs[k] += get(&counts[t].errors[i][k]);
	}
}

static double first_error_s(void)
{
	uint64_t first = 0;

	for (int t = 0; t < nthreads; t++) {
		uint64_t v = get(&counts[t].first_error_ns);

		if (v && (!first || v < first))
			first = v;
	}
	return first ? (double)(first - start_ns) / 1e9 : -1.0;
}

static void print_summary(FILE *f, int opened)
{
	uint64_t total = 0, tot_err[E_CLASSES] = { 0 };
	uint64_t reads, errs[E_CLASSES];

	for (int i = 0; i < ntargets; i++) {
		sum_file(i, &reads, errs);
		total += reads;
		for (int k = 0; k < E_CLASSES; k++)
			tot_err[k] += errs[k];
	}
	fprintf(f, "{\"reads\":%llu,\"errors\":{", (unsigned long long)total);
	for (int k = 0; k < E_CLASSES; k++)
		fprintf(f, "%s\"%s\":%llu", k ? "," : "", class_name[k], (unsigned long long)tot_err[k]);
	fprintf(f, "},\"threads\":%d,\"opened\":%d,\"seconds\":%.3f,\"first_error_s\":%.6f,\"files\":[",
		nthreads, opened, (double)(now_ns() - start_ns) / 1e9, first_error_s());
	for (int i = 0; i < ntargets; i++) {
		struct target *t = &targets[i];

		sum_file(i, &reads, errs);
		fprintf(f, "%s{\"path\":", i ? "," : "");
		json_string(f, t->path);
		if (t->fd < 0) {
			fprintf(f, ",\"open\":false,\"open_error\":");
			json_errno(f, t->open_errno);
		} else {
			fprintf(f, ",\"open\":true");
		}
		fprintf(f, ",\"reads\":%llu,\"errors\":{", (unsigned long long)reads);
		for (int k = 0; k < E_CLASSES; k++)
			fprintf(f, "%s\"%s\":%llu", k ? "," : "", class_name[k], (unsigned long long)errs[k]);
		fprintf(f, "}");
		if (t->last_other) {
			fprintf(f, ",\"last_other\":");
			json_errno(f, t->last_other);
		}
		fprintf(f, ",\"last\":");
		json_string(f, t->last);
		fprintf(f, "}");
	}
	fprintf(f, "]}\n");
	fflush(f);
}

static void print_progress(void)
{
	uint64_t total = 0, errors = 0, reads, errs[E_CLASSES];

	for (int i = 0; i < ntargets; i++) {
		sum_file(i, &reads, errs);
		total += reads;
		for (int k = 0; k < E_CLASSES; k++)
			errors += errs[k];
	}
	fprintf(stderr, "{\"t\":%.1f,\"reads\":%llu,\"errors\":%llu}\n", (double)(now_ns() - start_ns) / 1e9,
		(unsigned long long)total, (unsigned long long)errors);
}

/* --- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mlx5-reader [-t THREADS] [-d SECONDS] [-a ATTR[,ATTR..]] [-i IFNAME[,..]]... [-f FILE]...\n"
		"                   [-n NETDIR] [-v]\n"
		"  -t N      reader threads (default 4)\n"
		"  -d S      run S seconds (fractions allowed; default: until SIGTERM/SIGINT/SIGHUP)\n"
		"  -a LIST   attributes of each interface to read (default speed; e.g. speed,duplex)\n"
		"  -i LIST   interfaces to read (default: every interface whose device/driver is mlx5_core)\n"
		"  -f FILE   also read FILE (any path; repeatable)\n"
		"  -n DIR    the net class directory (default /sys/class/net)\n"
		"  -v        progress line on stderr every second\n"
		"Prints a one-line JSON summary on stdout. Exit: 0 ok, 2 bad usage, 3 nothing could be opened.\n");
}

static int split_list(char *arg, char out[][32], int *n, int max, const char *what)
{
	for (char *tok = strtok(arg, ","); tok; tok = strtok(NULL, ",")) {
		if (!*tok || strlen(tok) >= 32 || strchr(tok, '/') || !strcmp(tok, "..") || !strcmp(tok, ".")) {
			fprintf(stderr, "mlx5-reader: bad %s '%s'\n", what, tok);
			return -1;
		}
		if (*n >= max) {
			fprintf(stderr, "mlx5-reader: too many %ss (max %d)\n", what, max);
			return -1;
		}
		snprintf(out[(*n)++], 32, "%s", tok);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static char attrs[MAX_ATTRS][32], ifnames[MAX_FILES][32];
	const char *files[MAX_FILES];
	const char *netdir = "/sys/class/net";
	int nattrs = 0, nifs = 0, nfiles = 0, verbose = 0, opt;
	double duration = -1;
	char *end;

	while ((opt = getopt(argc, argv, "t:d:a:i:f:n:vh")) != -1) {
		switch (opt) {
		case 't':
			nthreads = (int)strtol(optarg, &end, 10);
			if (*end || nthreads < 1 || nthreads > MAX_THREADS) {
				fprintf(stderr, "mlx5-reader: -t wants 1..%d\n", MAX_THREADS);
				return 2;
			}
			break;
		case 'd':
			duration = strtod(optarg, &end);
			if (*end || !(duration >= 0)) {
				fprintf(stderr, "mlx5-reader: -d wants seconds >= 0\n");
				return 2;
			}
			break;
		case 'a':
			if (split_list(optarg, attrs, &nattrs, MAX_ATTRS, "attribute"))
				return 2;
			break;
		case 'i':
			if (split_list(optarg, ifnames, &nifs, MAX_FILES, "interface"))
				return 2;
			break;
		case 'f':
			if (nfiles >= MAX_FILES) {
				fprintf(stderr, "mlx5-reader: too many -f files\n");
				return 2;
			}
			files[nfiles++] = optarg;
			break;
		case 'n':
			netdir = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!nattrs)
		snprintf(attrs[nattrs++], 32, "speed");

	if (nifs) {
		for (int i = 0; i < nifs; i++)
			if (add_interface(netdir, ifnames[i], attrs, nattrs))
				return 2;
	} else if (!nfiles) {
		if (discover(netdir, attrs, nattrs) < 0)
			return 2;
		if (!ntargets)
			fprintf(stderr, "mlx5-reader: no mlx5_core interface in %s\n", netdir);
	}
	for (int i = 0; i < nfiles; i++)
		if (add_target(files[i]))
			return 2;

	int opened = 0;

	for (int i = 0; i < ntargets; i++) {
		struct target *t = &targets[i];

		t->fd = open(t->path, O_RDONLY | O_CLOEXEC);
		if (t->fd < 0) {
			t->open_errno = errno;
			fprintf(stderr, "mlx5-reader: cannot open %s: %s\n", t->path, strerror(errno));
		} else {
			opened++;
		}
	}

	counts = aligned_alloc(64, sizeof(*counts) * (size_t)nthreads);
	if (!counts) {
		perror("mlx5-reader: alloc");
		return 1;
	}
	memset(counts, 0, sizeof(*counts) * (size_t)nthreads);
	start_ns = now_ns();
	if (!opened) {
		print_summary(stdout, opened);
		return 3;
	}

	/* Workers inherit the blocked mask, so only sigtimedwait() below ever takes these signals. */
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int started = 0;

	for (int t = 0; t < nthreads; t++) {
		pthread_t th;

		if (pthread_create(&th, &attr, reader_thread, (void *)(intptr_t)t) == 0)
			started++;
		else
			fprintf(stderr, "mlx5-reader: cannot start thread %d\n", t);
	}
	if (!started)
		return 1;

	uint64_t deadline = duration >= 0 ? start_ns + (uint64_t)(duration * 1e9) : 0;
	uint64_t next_progress = start_ns + 1000000000ull;

	for (;;) {
		uint64_t now = now_ns();

		if (deadline && now >= deadline)
			break;
		uint64_t wake = next_progress;

		if (deadline && deadline < wake)
			wake = deadline;
		uint64_t wait = wake > now ? wake - now : 0;
		struct timespec ts = { .tv_sec = (time_t)(wait / 1000000000ull),
				       .tv_nsec = (long)(wait % 1000000000ull) };

		if (sigtimedwait(&set, NULL, &ts) > 0)
			break;
		if (now_ns() >= next_progress) {
			if (verbose)
				print_progress();
			next_progress += 1000000000ull;
		}
	}

	/* A worker can be stuck in the kernel (that is what we are probing): wait at most 1 s for them. */
	stop = 1;
	for (int i = 0; i < 100 && __atomic_load_n(&finished_threads, __ATOMIC_ACQUIRE) < started; i++)
		usleep(10000);
	print_summary(stdout, opened);
	_exit(0);
}
