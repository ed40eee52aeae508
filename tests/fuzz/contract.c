/* tests/fuzz/contract.c -- libFuzzer: contract documents and typed text values.
 * Any input must give 0 or a clean E_INVAL with problems listed, never a crash. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "contract/contract.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct errlist errs = {0};
    struct contract *c = NULL;
    struct err e = {0};
    struct buf b;
    int i;

    if (contract_compile((const char *)data, size, NULL, 1, &c, &errs, &e) == 0) {
        /* Type the input's own bytes as every property of the contract it compiled to. */
        buf_init(&b);
        for (i = 0; i < contract_nprops(c); i++) {
            char msg[256];
            int64_t ms;
            buf_reset(&b);
            contract_type_text(c, i, (const char *)data, size, &b, &ms, msg, sizeof msg);
        }
        buf_release(&b);
        contract_free(c);
    } else if (errs.n == 0) {
        abort(); /* a refusal must say why */
    }
    return 0;
}
