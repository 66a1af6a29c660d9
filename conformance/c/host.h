/* The C host of the conformance runner: one small interface that each runtime's C API
 * implements (openvino.c, tract.c, onnxruntime.c), and the tensors that cross it.
 * host.c speaks the runner's protocol on stdin/stdout and calls these; exactly one backend
 * file is compiled in with it. */
#ifndef CONFORMANCE_HOST_H
#define CONFORMANCE_HOST_H

#include <stddef.h>
#include <stdint.h>

#define HOST_MAX_RANK 8
#define HOST_MAX_NAME 512

typedef enum { DT_FLOAT32, DT_FLOAT64, DT_INT32, DT_INT64, DT_COUNT } host_dtype;

typedef struct {
    char name[HOST_MAX_NAME];
    host_dtype dtype;
    int rank;
    int64_t dims[HOST_MAX_RANK];
    void *data;          /* row-major, little-endian, host-owned (malloc) */
} host_tensor;

size_t host_dtype_size(host_dtype dtype);
size_t host_elements(const host_tensor *t);
/* Set the host's error message (printf-style); backends return -1 after calling it. */
int host_fail(const char *fmt, ...);
/* Complete output `name`, whose rank and dims the backend has set (rank <= HOST_MAX_RANK):
 * its dtype is the one whose entry in the backend's `codes` (indexed by host_dtype) is the
 * runtime's element-type code `code`, and its data a copy of the runtime's `data`. */
int host_output(host_tensor *out, const char *name, const long long codes[DT_COUNT],
                long long code, const void *data);

/* What each backend implements; each returns 0, or -1 after host_fail(). */
const char *backend_name(void);
const char *backend_version(void);
int backend_load(const char *model_path);
/* Inputs by name. names: the graph's output names in graph order, read by the runner from the
 * ONNX file (a runtime may know an output under several names, or by position only); fills
 * outputs[0..n_outputs) with each one's dtype, dims and malloc'd data. */
int backend_run(const host_tensor *inputs, int n_inputs, char *const *names, int n_outputs,
                host_tensor *outputs);
void backend_unload(void);

#endif
