/*
 * httpext.h — the ISAPI extension contract, in our own words.
 *
 * Written from Microsoft's documentation of ISAPI extensions (IIS 6 SDK pages for
 * EXTENSION_CONTROL_BLOCK, HSE_*_INFO, ServerSupportFunction) with fixed-width types,
 * so that this one header describes the Windows x64 ABI on every platform we build on.
 * `build.rs` turns it into Rust with bindgen; `tests/layout.rs` pins every struct's size
 * and field offsets to the Windows x64 values.
 *
 * Both sides use it: the extension (isapi_wsgi) and the host that loads it (isapi-host).
 */
#ifndef ISAPI_WSGI_HTTPEXT_H
#define ISAPI_WSGI_HTTPEXT_H

#include <stdint.h>

/* ---- Windows base types, pinned to their Windows widths ------------------------- */
typedef uint32_t DWORD;    /* unsigned 32-bit on every Windows ABI                   */
typedef int32_t  BOOL;     /* 32-bit; any non-zero value counts as TRUE             */
typedef uint16_t WCHAR;    /* one UTF-16 code unit                                   */
typedef uint16_t USHORT;
typedef uint8_t  BYTE;
typedef uint64_t ULONGLONG;
typedef char     CHAR;
typedef void    *HANDLE;
typedef void    *HCONN;    /* opaque per-request connection handle chosen by the server */

/* Every entry point and callback is WINAPI: __stdcall on 32-bit Windows, the single
 * platform convention everywhere else (Rust: extern "system"). */
#if defined(_WIN32) && !defined(_WIN64)
#define WINAPI __stdcall
#else
#define WINAPI
#endif

/* ---- Versions and fixed sizes --------------------------------------------------- */
#define HSE_VERSION_MAJOR 8          /* current Windows SDK (mingw-w64 still says 6) */
#define HSE_VERSION_MINOR 0
#define HSE_VERSION ((DWORD)(((DWORD)HSE_VERSION_MAJOR << 16) | HSE_VERSION_MINOR))
#define HSE_LOG_BUFFER_LEN 80
#define HSE_MAX_EXT_DLL_NAME_LEN 256

/* ---- HttpExtensionProc return codes --------------------------------------------- */
#define HSE_STATUS_SUCCESS                1
#define HSE_STATUS_SUCCESS_AND_KEEP_CONN  2
#define HSE_STATUS_PENDING                3  /* finish later with HSE_REQ_DONE_WITH_SESSION */
#define HSE_STATUS_ERROR                  4

/* ---- ServerSupportFunction request codes ----------------------------------------- */
#define HSE_REQ_BASE                        0
#define HSE_REQ_SEND_URL_REDIRECT_RESP      1
#define HSE_REQ_SEND_URL                    2
#define HSE_REQ_SEND_RESPONSE_HEADER        3
#define HSE_REQ_DONE_WITH_SESSION           4
#define HSE_REQ_END_RESERVED             1000
#define HSE_REQ_MAP_URL_TO_PATH          1001
#define HSE_REQ_GET_SSPI_INFO            1002
#define HSE_APPEND_LOG_PARAMETER         1003  /* the one name without HSE_REQ_ */
#define HSE_REQ_IO_COMPLETION            1005
#define HSE_REQ_TRANSMIT_FILE            1006
#define HSE_REQ_REFRESH_ISAPI_ACL        1007
#define HSE_REQ_IS_KEEP_CONN             1008
#define HSE_REQ_ASYNC_READ_CLIENT        1010
#define HSE_REQ_GET_IMPERSONATION_TOKEN  1011
#define HSE_REQ_MAP_URL_TO_PATH_EX       1012
#define HSE_REQ_ABORTIVE_CLOSE           1014
#define HSE_REQ_GET_CERT_INFO_EX         1015
#define HSE_REQ_SEND_RESPONSE_HEADER_EX  1016
#define HSE_REQ_CLOSE_CONNECTION         1017
#define HSE_REQ_IS_CONNECTED             1018
#define HSE_REQ_MAP_UNICODE_URL_TO_PATH  1023
#define HSE_REQ_MAP_UNICODE_URL_TO_PATH_EX 1024
#define HSE_REQ_EXEC_UNICODE_URL         1025
#define HSE_REQ_EXEC_URL                 1026
#define HSE_REQ_GET_EXEC_URL_STATUS      1027
#define HSE_REQ_SEND_CUSTOM_ERROR        1028
#define HSE_REQ_IS_IN_PROCESS            1030
#define HSE_REQ_REPORT_UNHEALTHY         1032
#define HSE_REQ_NORMALIZE_URL            1033
#define HSE_REQ_VECTOR_SEND              1037
#define HSE_REQ_GET_ANONYMOUS_TOKEN      1038
#define HSE_REQ_GET_CACHE_INVALIDATION_CALLBACK 1040
#define HSE_REQ_GET_UNICODE_ANONYMOUS_TOKEN 1041
#define HSE_REQ_GET_TRACE_INFO           1042
#define HSE_REQ_SET_FLUSH_FLAG           1043
#define HSE_REQ_GET_TRACE_INFO_EX        1044
#define HSE_REQ_RAISE_TRACE_EVENT        1045
#define HSE_REQ_GET_CONFIG_OBJECT        1046
#define HSE_REQ_GET_WORKER_PROCESS_SETTINGS 1047
#define HSE_REQ_GET_PROTOCOL_MANAGER_CUSTOM_INTERFACE_CALLBACK 1048
#define HSE_REQ_CANCEL_IO                1049
#define HSE_REQ_GET_CHANNEL_BINDING_TOKEN 1050

/* ---- TerminateExtension flags ---------------------------------------------------- */
#define HSE_TERM_ADVISORY_UNLOAD 1
#define HSE_TERM_MUST_UNLOAD     2

/* ---- I/O flags (WriteClient's 4th argument, HSE_TF_INFO.dwFlags, ...) ------------ */
#define HSE_IO_SYNC                   0x00000001
#define HSE_IO_ASYNC                  0x00000002
#define HSE_IO_DISCONNECT_AFTER_SEND  0x00000004
#define HSE_IO_SEND_HEADERS           0x00000008
#define HSE_IO_FINAL_SEND             0x00000010
#define HSE_IO_CACHE_RESPONSE         0x00000020
#define HSE_IO_TRY_SKIP_CUSTOM_ERRORS 0x00000040
#define HSE_IO_NODELAY                0x00001000

/* ---- URL flags (HSE_URL_MAPEX_INFO.dwFlags) -------------------------------------- */
#define HSE_URL_FLAGS_READ         0x00000001
#define HSE_URL_FLAGS_WRITE        0x00000002
#define HSE_URL_FLAGS_EXECUTE      0x00000004
#define HSE_URL_FLAGS_SSL          0x00000008
#define HSE_URL_FLAGS_DONT_CACHE   0x00000010
#define HSE_URL_FLAGS_NEGO_CERT    0x00000020
#define HSE_URL_FLAGS_REQUIRE_CERT 0x00000040
#define HSE_URL_FLAGS_MAP_CERT     0x00000080
#define HSE_URL_FLAGS_SSL128       0x00000100
#define HSE_URL_FLAGS_SCRIPT       0x00000200
#define HSE_URL_FLAGS_MASK         0x000003ff

/* ---- Vector-send element types --------------------------------------------------- */
#define HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER 0
#define HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE   1

/* ---- Win32 error codes an extension meets (GetLastError / dwError) --------------- */
#define ERROR_FILE_NOT_FOUND        2
#define ERROR_ACCESS_DENIED         5
#define ERROR_NETNAME_DELETED      64
#define ERROR_INVALID_PARAMETER    87
#define ERROR_INSUFFICIENT_BUFFER 122
#define ERROR_MOD_NOT_FOUND       126
#define ERROR_PROC_NOT_FOUND      127
#define ERROR_BAD_EXE_FORMAT      193
#define ERROR_NO_DATA             232
#define ERROR_MORE_DATA           234
#define ERROR_OPERATION_ABORTED   995
#define ERROR_IO_PENDING          997
#define ERROR_DLL_INIT_FAILED    1114
#define ERROR_CONNECTION_ABORTED 1236
#define ERROR_INVALID_INDEX      1413
#define WSAEINVAL               10022

/* ---- GetExtensionVersion's out-parameter ---------------------------------------- */
typedef struct _HSE_VERSION_INFO {
    DWORD dwExtensionVersion;                         /* HSE_VERSION */
    CHAR  lpszExtensionDesc[HSE_MAX_EXT_DLL_NAME_LEN]; /* NUL-terminated description */
} HSE_VERSION_INFO;

/* ---- The EXTENSION_CONTROL_BLOCK: one per request ------------------------------- */
struct _EXTENSION_CONTROL_BLOCK;

typedef BOOL (WINAPI *PFN_GETSERVERVARIABLE)(HCONN hConn, char *lpszVariableName,
                                             void *lpvBuffer, DWORD *lpdwSize);
typedef BOOL (WINAPI *PFN_WRITECLIENT)(HCONN ConnID, void *Buffer, DWORD *lpdwBytes,
                                       DWORD dwSync /* HSE_IO_SYNC or HSE_IO_ASYNC */);
typedef BOOL (WINAPI *PFN_READCLIENT)(HCONN ConnID, void *lpvBuffer, DWORD *lpdwSize);
typedef BOOL (WINAPI *PFN_SERVERSUPPORTFUNCTION)(HCONN hConn, DWORD dwHSERequest,
                                                 void *lpvBuffer, DWORD *lpdwSize,
                                                 DWORD *lpdwDataType);

typedef struct _EXTENSION_CONTROL_BLOCK {
    DWORD cbSize;                   /* size of this struct                              */
    DWORD dwVersion;                /* HIWORD major, LOWORD minor of the server's spec  */
    HCONN ConnID;                   /* passed back to every callback                    */
    DWORD dwHttpStatusCode;         /* the extension sets the status, for the log       */
    CHAR  lpszLogData[HSE_LOG_BUFFER_LEN]; /* extension-specific log text (NUL-terminated) */
    char *lpszMethod;               /* REQUEST_METHOD                                   */
    char *lpszQueryString;          /* QUERY_STRING                                     */
    char *lpszPathInfo;             /* PATH_INFO                                        */
    char *lpszPathTranslated;       /* PATH_TRANSLATED                                  */
    DWORD cbTotalBytes;             /* Content-Length; 0xFFFFFFFF = unknown (chunked)   */
    DWORD cbAvailable;              /* bytes of the body already read into lpbData      */
    BYTE *lpbData;                  /* the pre-read part of the body                    */
    char *lpszContentType;          /* CONTENT_TYPE                                     */
    PFN_GETSERVERVARIABLE     GetServerVariable;
    PFN_WRITECLIENT           WriteClient;
    PFN_READCLIENT            ReadClient;
    PFN_SERVERSUPPORTFUNCTION ServerSupportFunction;
} EXTENSION_CONTROL_BLOCK;

/* Completion callback for HSE_IO_ASYNC operations (registered with HSE_REQ_IO_COMPLETION). */
typedef void (WINAPI *PFN_HSE_IO_COMPLETION)(EXTENSION_CONTROL_BLOCK *pECB, void *pContext,
                                             DWORD cbIO, DWORD dwError);

/* ---- ServerSupportFunction argument blocks -------------------------------------- */

/* HSE_REQ_SEND_RESPONSE_HEADER_EX */
typedef struct _HSE_SEND_HEADER_EX_INFO {
    const char *pszStatus;   /* "200 OK": no "HTTP/1.1", no CRLF                      */
    const char *pszHeader;   /* "Name: value\r\n"... then a final "\r\n"              */
    DWORD cchStatus;         /* strlen(pszStatus)                                      */
    DWORD cchHeader;         /* strlen(pszHeader)                                      */
    BOOL  fKeepConn;         /* keep the connection open after this response          */
} HSE_SEND_HEADER_EX_INFO;

/* HSE_REQ_TRANSMIT_FILE */
typedef struct _HSE_TF_INFO {
    PFN_HSE_IO_COMPLETION pfnHseIO; /* overrides the IO_COMPLETION callback if non-NULL */
    void       *pContext;
    HANDLE      hFile;              /* an open file (a Win32 HANDLE; a file descriptor off Windows) */
    const char *pszStatusCode;      /* with HSE_IO_SEND_HEADERS: "200 OK"                */
    DWORD       BytesToWrite;       /* 0 = the whole file                                */
    DWORD       Offset;
    void       *pHead;              /* sent before the file (headers with HSE_IO_SEND_HEADERS) */
    DWORD       HeadLength;
    void       *pTail;              /* sent after the file                               */
    DWORD       TailLength;
    DWORD       dwFlags;            /* HSE_IO_* */
} HSE_TF_INFO;

/* HSE_REQ_MAP_URL_TO_PATH_EX */
typedef struct _HSE_URL_MAPEX_INFO {
    CHAR  lpszPath[260];            /* MAX_PATH */
    DWORD dwFlags;                  /* HSE_URL_FLAGS_* */
    DWORD cchMatchingPath;
    DWORD cchMatchingURL;
    DWORD dwReserved1;
    DWORD dwReserved2;
} HSE_URL_MAPEX_INFO;

/* HSE_REQ_MAP_UNICODE_URL_TO_PATH_EX (the headers carry no reserved fields here) */
typedef struct _HSE_UNICODE_URL_MAPEX_INFO {
    WCHAR lpszPath[260];
    DWORD dwFlags;
    DWORD cchMatchingPath;
    DWORD cchMatchingURL;
} HSE_UNICODE_URL_MAPEX_INFO;

/* HSE_REQ_EXEC_URL and friends (declared for completeness; no side relies on them) */
typedef struct _HSE_EXEC_URL_USER_INFO {
    HANDLE hImpersonationToken;
    char  *pszCustomUserName;
    char  *pszCustomAuthType;
} HSE_EXEC_URL_USER_INFO;

typedef struct _HSE_EXEC_URL_ENTITY_INFO {
    DWORD cbAvailable;
    void *lpbData;
} HSE_EXEC_URL_ENTITY_INFO;

typedef struct _HSE_EXEC_URL_INFO {
    char *pszUrl;
    char *pszMethod;
    char *pszChildHeaders;
    HSE_EXEC_URL_USER_INFO   *pUserInfo;
    HSE_EXEC_URL_ENTITY_INFO *pEntity;
    DWORD dwExecUrlFlags;
} HSE_EXEC_URL_INFO;

typedef struct _HSE_EXEC_URL_STATUS {
    USHORT uHttpStatusCode;
    USHORT uHttpSubStatus;
    DWORD  dwWin32Error;
} HSE_EXEC_URL_STATUS;

/* HSE_REQ_SEND_CUSTOM_ERROR */
typedef struct _HSE_CUSTOM_ERROR_INFO {
    char  *pszStatus;
    USHORT uHttpSubError;
    BOOL   fAsync;
} HSE_CUSTOM_ERROR_INFO;

/* HSE_REQ_VECTOR_SEND */
typedef struct _HSE_VECTOR_ELEMENT {
    DWORD     ElementType;  /* HSE_VECTOR_ELEMENT_TYPE_* */
    void     *pvContext;    /* a buffer or a file handle */
    ULONGLONG cbOffset;
    ULONGLONG cbSize;       /* 0 with a file = the rest of the file */
} HSE_VECTOR_ELEMENT;

typedef struct _HSE_RESPONSE_VECTOR {
    DWORD  dwFlags;
    char  *pszStatus;
    char  *pszHeaders;
    DWORD  nElementCount;
    HSE_VECTOR_ELEMENT *lpElementArray;
} HSE_RESPONSE_VECTOR;

/* ---- The three exports an extension provides ------------------------------------ */
typedef BOOL  (WINAPI *PFN_GETEXTENSIONVERSION)(HSE_VERSION_INFO *pVer);
typedef DWORD (WINAPI *PFN_HTTPEXTENSIONPROC)(EXTENSION_CONTROL_BLOCK *pECB);
typedef BOOL  (WINAPI *PFN_TERMINATEEXTENSION)(DWORD dwFlags);

#endif /* ISAPI_WSGI_HTTPEXT_H */
