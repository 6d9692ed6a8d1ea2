/* The elementwise part of one GRU step, forward and backward, fused into one pass over the
 * rows (bdps_agents/networks/native.py compiles and loads it; gru_sequence.py's GRUSequence calls
 * it between the matrix products). Gate order r, z, n as torch.nn.GRUCell; every array is
 * contiguous float32, rows x width as named. */
#include <math.h>

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* gi: (rows, 3H) input gate pre-activations; gh: (rows, groups * 3H) the recurrent ones of
 * every group's cell (biases included), of which row i reads group[i]'s (group NULL: groups is
 * 1); h_prev: (rows, H). Writes rz (rows, 2H) = [r, z], n (rows, H), hn (rows, H) = the n part
 * of the row's gh, h (rows, H) = n + z * (h_prev - n). */
void gru_forward(long rows, long H, long groups, const long *restrict group,
                 const float *restrict gi, const float *restrict gh,
                 const float *restrict h_prev, float *restrict rz, float *restrict n,
                 float *restrict hn, float *restrict h) {
    for (long i = 0; i < rows; i++) {
        const float *g = gi + i * 3 * H, *hp = h_prev + i * H;
        const float *u = gh + (i * groups + (group ? group[i] : 0)) * 3 * H;
        float *rzi = rz + i * 2 * H, *ni = n + i * H, *hni = hn + i * H, *hi = h + i * H;
        for (long j = 0; j < H; j++) {
            float r = sigmoid(g[j] + u[j]);
            float z = sigmoid(g[H + j] + u[H + j]);
            float un = u[2 * H + j];
            float a = g[2 * H + j] + r * un;
            float nn = 2.0f * sigmoid(2.0f * a) - 1.0f; /* tanh(a) */
            rzi[j] = r;
            rzi[H + j] = z;
            hni[j] = un;
            ni[j] = nn;
            hi[j] = nn + z * (hp[j] - nn);
        }
    }
}

/* One step back: dh = carry + d_out + dh_next * z_next, the gradient reaching h_t. carry:
 * (rows, groups * H), the gradient through the next step's recurrent product by every cell,
 * of which row i reads carry_group[i]'s (the cell that step used; carry_group NULL: groups is
 * 1); dh_next, z_next: the next step's dh and its rz, zeros after the last step; rz, n, hn,
 * h_prev as saved by gru_forward for this step. Writes dh (rows, H), d_gi and d_gh (rows, 3H):
 * the gradients of the input and recurrent gate pre-activations. */
void gru_backward(long rows, long H, long groups, const long *restrict carry_group,
                  const float *restrict carry, const float *restrict d_out,
                  const float *restrict dh_next, const float *restrict z_next,
                  const float *restrict rz, const float *restrict n, const float *restrict hn,
                  const float *restrict h_prev, float *restrict dh, float *restrict d_gi,
                  float *restrict d_gh) {
    for (long i = 0; i < rows; i++) {
        const float *c = carry + (i * groups + (carry_group ? carry_group[i] : 0)) * H;
        const float *d = d_out + i * H, *rzi = rz + i * 2 * H;
        const float *ni = n + i * H, *hni = hn + i * H, *hp = h_prev + i * H;
        float *dhi = dh + i * H, *dgi = d_gi + i * 3 * H, *dgh = d_gh + i * 3 * H;
        const float *dn = dh_next + i * H, *zn = z_next + i * 2 * H + H;
        for (long j = 0; j < H; j++) {
            float g = c[j] + d[j] + dn[j] * zn[j];
            float r = rzi[j], z = rzi[H + j], nn = ni[j];
            float d_pre_n = g * (1.0f - z) * (1.0f - nn * nn);
            float d_pre_r = d_pre_n * hni[j] * r * (1.0f - r);
            float d_pre_z = g * (hp[j] - nn) * z * (1.0f - z);
            dhi[j] = g;
            dgi[j] = d_pre_r;
            dgi[H + j] = d_pre_z;
            dgi[2 * H + j] = d_pre_n;
            dgh[j] = d_pre_r;
            dgh[H + j] = d_pre_z;
            dgh[2 * H + j] = d_pre_n * r;
        }
    }
}
