/* ProcessPrng for Wine 8 (Debian 12), whose prefix has no bcryptprimitives.dll: Rust's
 * standard library (1.78 on) and getrandom take their random bytes from it on Windows, so
 * every Rust program for x86_64-pc-windows-gnu fails to start there ("Library
 * bcryptprimitives.dll ... not found"). tests/windows.rs builds this stand-in with
 * mingw-w64 into the test's own Wine prefix: the bytes come from RtlGenRandom
 * (advapi32's SystemFunction036), which Wine has. Real Windows (8 on) has the DLL. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG part = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, part)) {
            return FALSE;
        }
        data += part;
        len -= part;
    }
    return TRUE;
}
