/* OpenVINO's C API (openvino/c/openvino.h, libopenvino_c; both ship in the openvino wheel):
 * read the ONNX file, compile it for the CPU in f32, run one inference request per call.
 * What a C deployment of an exported model looks like. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openvino/c/openvino.h>

#include "host.h"

static ov_core_t *core;
static ov_compiled_model_t *compiled;
static char version[128];

static const long long OV_TYPES[DT_COUNT] = {F32, F64, I32, I64};

static int failed(ov_status_e status, const char *what) {
    const char *detail = ov_get_last_err_msg();
    return host_fail("%s: %s (%s)", what, ov_get_error_info(status),
                     detail && *detail ? detail : "no detail");
}

#define OV_CHECK(call, what) do { ov_status_e s_ = (call); if (s_ != OK) return failed(s_, what); } while (0)

const char *backend_name(void) { return "openvino"; }

const char *backend_version(void) {
    ov_version_t v;
    if (!version[0] && ov_get_openvino_version(&v) == OK) {
        snprintf(version, sizeof version, "%s", v.buildNumber);
        ov_version_free(&v);
    }
    return version;
}

int backend_load(const char *model_path) {
    if (!core) OV_CHECK(ov_core_create(&core), "ov_core_create");
    ov_model_t *model = NULL;
    OV_CHECK(ov_core_read_model(core, model_path, NULL, &model), "read_model");
    /* the CPU plugin computes in bf16/f16 by default where the CPU has them: ask for f32 */
    ov_status_e s = ov_core_compile_model(core, model, "CPU", 2, &compiled,
                                          ov_property_key_hint_inference_precision, "f32");
    ov_model_free(model);
    if (s != OK) return failed(s, "compile_model");
    char *used = NULL;
    OV_CHECK(ov_compiled_model_get_property(compiled, ov_property_key_hint_inference_precision, &used),
             "get_property");
    int f32 = strstr(used, "f32") != NULL || strstr(used, "float32") != NULL;
    if (!f32) host_fail("OpenVINO ignored the f32 precision hint (runs %s)", used);
    ov_free(used);
    return f32 ? 0 : -1;
}

static int to_host(const ov_tensor_t *t, const char *name, host_tensor *out) {
    ov_shape_t shape;
    ov_element_type_e type;
    void *data;
    OV_CHECK(ov_tensor_get_shape(t, &shape), "get_shape");
    OV_CHECK(ov_tensor_get_element_type(t, &type), "get_element_type");
    OV_CHECK(ov_tensor_data(t, &data), "tensor_data");
    out->rank = (int)shape.rank;
    for (int i = 0; i < out->rank && i < HOST_MAX_RANK; i++) out->dims[i] = shape.dims[i];
    ov_shape_free(&shape);
    if (out->rank > HOST_MAX_RANK) return host_fail("output %s: rank %d", name, out->rank);
    return host_output(out, name, OV_TYPES, type, data);
}

int backend_run(const host_tensor *inputs, int n_inputs, char *const *names, int n_outputs,
                host_tensor *outputs) {
    ov_infer_request_t *request = NULL;
    OV_CHECK(ov_compiled_model_create_infer_request(compiled, &request), "create_infer_request");
    int rc = 0;
    for (int i = 0; i < n_inputs && rc == 0; i++) {
        ov_shape_t shape;
        ov_tensor_t *t = NULL;
        ov_status_e s = ov_shape_create(inputs[i].rank, inputs[i].dims, &shape);
        if (s == OK) {
            s = ov_tensor_create_from_host_ptr((ov_element_type_e)OV_TYPES[inputs[i].dtype], shape, inputs[i].data, &t);
            ov_shape_free(&shape);
        }
        if (s == OK) s = ov_infer_request_set_tensor(request, inputs[i].name, t);
        if (t) ov_tensor_free(t);
        if (s != OK) rc = failed(s, inputs[i].name);
    }
    ov_status_e s = rc == 0 ? ov_infer_request_infer(request) : OK;
    if (s != OK) rc = failed(s, "infer");
    for (int i = 0; i < n_outputs && rc == 0; i++) {
        ov_tensor_t *t = NULL;
        /* by the graph's own name: an OpenVINO output may carry several names */
        s = ov_infer_request_get_tensor(request, names[i], &t);
        rc = s != OK ? failed(s, names[i]) : to_host(t, names[i], &outputs[i]);
        if (t) ov_tensor_free(t);
    }
    ov_infer_request_free(request);
    return rc;
}

void backend_unload(void) {
    if (compiled) ov_compiled_model_free(compiled);
    compiled = NULL;
}
