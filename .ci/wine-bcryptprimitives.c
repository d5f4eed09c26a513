/*
 * bcryptprimitives.dll for wine 8 (test environment only, never shipped).
 *
 * Rust's standard library for Windows (1.78+) imports ProcessPrng from
 * bcryptprimitives.dll, which every Windows 10+ has but wine added only in 9.x. Without it
 * wine refuses to start any Rust-built exe or DLL ("Library bcryptprimitives.dll ... not
 * found", status c0000135). .ci/wine-setup builds this file with mingw-w64 and drops it
 * into the test prefix's system32. It forwards to RtlGenRandom (advapi32!SystemFunction036),
 * which wine has always implemented.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
