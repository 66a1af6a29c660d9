/* The conformance runner's C host: runs ONNX models through one runtime's C API (the backend
 * compiled in with this file) for conformance/runtimes/c.py, over stdin/stdout:
 *
 *   hello\n                          -> ok <backend> <version>\n
 *   load <k>\n<model path>\n<output name>\n × k
 *                                    -> ok\n | error <message>\n
 *   run <n>\n then n × (<header>\n<raw bytes>)
 *                                    -> ok <k>\n then k × (<header>\n<raw bytes>) | error <message>\n
 *
 *   <header> = <dtype> <rank> <dim>... <name>   (dtype: float32 float64 int32 int64; the name
 *   is the rest of the line). Raw bytes: the tensor's elements, row-major, little-endian.
 * The process ends when stdin closes. Nothing here is specific to a runtime. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

#ifdef __linux__
#include <signal.h>
#include <sys/prctl.h>
#endif

static const char *DTYPE_NAMES[DT_COUNT] = {"float32", "float64", "int32", "int64"};
static const size_t DTYPE_SIZES[DT_COUNT] = {4, 8, 4, 8};
static char error_text[4096];

size_t host_dtype_size(host_dtype dtype) { return DTYPE_SIZES[dtype]; }

size_t host_elements(const host_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= (size_t)t->dims[i];
    return n;
}

int host_fail(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(error_text, sizeof error_text, fmt, args);
    va_end(args);
    for (char *c = error_text; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';   /* one line on the wire */
    return -1;
}

int host_output(host_tensor *out, const char *name, const long long codes[DT_COUNT],
                long long code, const void *data) {
    snprintf(out->name, sizeof out->name, "%s", name);
    out->dtype = DT_COUNT;
    for (int k = 0; k < DT_COUNT; k++)
        if (codes[k] == code) out->dtype = (host_dtype)k;
    if (out->dtype == DT_COUNT) return host_fail("output %s: element type %lld", name, code);
    size_t bytes = host_elements(out) * host_dtype_size(out->dtype);
    out->data = malloc(bytes ? bytes : 1);
    memcpy(out->data, data, bytes);
    return 0;
}

static int read_line(char *buf, size_t size) {
    if (!fgets(buf, (int)size, stdin)) return -1;
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

static void reply_error(void) {
    printf("error %s\n", error_text[0] ? error_text : "unknown error");
    error_text[0] = '\0';
}

static int parse_header(char *line, host_tensor *t) {
    char dtype[16];
    int used = 0;
    if (sscanf(line, "%15s %d%n", dtype, &t->rank, &used) != 2 || t->rank < 0 ||
        t->rank > HOST_MAX_RANK)
        return host_fail("bad tensor header: %s", line);
    t->dtype = DT_COUNT;
    for (int k = 0; k < DT_COUNT; k++)
        if (strcmp(dtype, DTYPE_NAMES[k]) == 0) t->dtype = (host_dtype)k;
    if (t->dtype == DT_COUNT) return host_fail("unsupported dtype %s", dtype);
    char *p = line + used;
    for (int i = 0; i < t->rank; i++) {
        long long d;
        int n = 0;
        if (sscanf(p, "%lld%n", &d, &n) != 1 || d < 0) return host_fail("bad dims: %s", line);
        t->dims[i] = d;
        p += n;
    }
    while (*p == ' ') p++;
    snprintf(t->name, sizeof t->name, "%s", p);
    return 0;
}

static void free_tensors(host_tensor *ts, int n) {
    for (int i = 0; i < n; i++) free(ts[i].data);
    free(ts);
}

static int read_tensors(int n, host_tensor **out) {
    host_tensor *ts = calloc((size_t)(n > 0 ? n : 1), sizeof *ts);
    char line[HOST_MAX_NAME + 256];
    for (int i = 0; i < n; i++) {
        if (read_line(line, sizeof line) || parse_header(line, &ts[i])) {
            free_tensors(ts, i);
            return -1;
        }
        size_t bytes = host_elements(&ts[i]) * host_dtype_size(ts[i].dtype);
        ts[i].data = malloc(bytes ? bytes : 1);
        if (fread(ts[i].data, 1, bytes, stdin) != bytes) {
            free_tensors(ts, i + 1);
            return host_fail("input %s: short read", ts[i].name);
        }
    }
    *out = ts;
    return 0;
}

static void write_tensors(const host_tensor *ts, int n) {
    printf("ok %d\n", n);
    for (int i = 0; i < n; i++) {
        printf("%s %d", DTYPE_NAMES[ts[i].dtype], ts[i].rank);
        for (int d = 0; d < ts[i].rank; d++) printf(" %lld", (long long)ts[i].dims[d]);
        printf(" %s\n", ts[i].name);
        fwrite(ts[i].data, 1, host_elements(&ts[i]) * host_dtype_size(ts[i].dtype), stdout);
    }
}

static char **output_names;
static int n_output_names;

static void forget_outputs(void) {
    for (int i = 0; i < n_output_names; i++) free(output_names[i]);
    free(output_names);
    output_names = NULL;
    n_output_names = 0;
}

static void load(int k) {
    char path[4096], name[HOST_MAX_NAME];
    backend_unload();
    forget_outputs();
    if (read_line(path, sizeof path)) return (void)(host_fail("load: no model path"), reply_error());
    output_names = calloc((size_t)(k > 0 ? k : 1), sizeof *output_names);
    for (; n_output_names < k; n_output_names++) {
        if (read_line(name, sizeof name)) return (void)(host_fail("load: missing output names"), reply_error());
        output_names[n_output_names] = strdup(name);
    }
    if (backend_load(path)) return reply_error();
    printf("ok\n");
}

static void run(int n) {
    host_tensor *inputs = NULL;
    if (read_tensors(n, &inputs)) return reply_error();
    host_tensor *outputs = calloc((size_t)(n_output_names > 0 ? n_output_names : 1), sizeof *outputs);
    if (backend_run(inputs, n, output_names, n_output_names, outputs)) reply_error();
    else write_tensors(outputs, n_output_names);
    free_tensors(inputs, n);
    free_tensors(outputs, n_output_names);
}

int main(void) {
    char line[256];
    int n;
#ifdef __linux__
    /* die with the runner's worker, even inside a runtime call that hangs */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    while (read_line(line, sizeof line) == 0) {
        if (strcmp(line, "hello") == 0) printf("ok %s %s\n", backend_name(), backend_version());
        else if (sscanf(line, "load %d", &n) == 1) load(n);
        else if (sscanf(line, "run %d", &n) == 1) run(n);
        else printf("error unknown command: %s\n", line);
        fflush(stdout);
    }
    backend_unload();
    forget_outputs();
    return 0;
}
