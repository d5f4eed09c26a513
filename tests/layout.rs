//! Pins every struct of `headers/httpext.h` (as bindgen translated it) to the Windows x64
//! sizes and field offsets documented in the facts file §1.2, measured with mingw-w64's
//! httpext.h under wine. If this fails, the host and the extension disagree with IIS about
//! where a field lives.
use isapi_wsgi::isapi::ffi::*;
use std::mem::{align_of, offset_of, size_of};

#[test]
fn extension_control_block() {
    type T = EXTENSION_CONTROL_BLOCK;
    assert_eq!((size_of::<T>(), align_of::<T>()), (192, 8));
    assert_eq!(offset_of!(T, cbSize), 0);
    assert_eq!(offset_of!(T, dwVersion), 4);
    assert_eq!(offset_of!(T, ConnID), 8);
    assert_eq!(offset_of!(T, dwHttpStatusCode), 16);
    assert_eq!(offset_of!(T, lpszLogData), 20);
    assert_eq!(size_of::<[CHAR; 80]>(), 80);
    assert_eq!(offset_of!(T, lpszMethod), 104);
    assert_eq!(offset_of!(T, lpszQueryString), 112);
    assert_eq!(offset_of!(T, lpszPathInfo), 120);
    assert_eq!(offset_of!(T, lpszPathTranslated), 128);
    assert_eq!(offset_of!(T, cbTotalBytes), 136);
    assert_eq!(offset_of!(T, cbAvailable), 140);
    assert_eq!(offset_of!(T, lpbData), 144);
    assert_eq!(offset_of!(T, lpszContentType), 152);
    assert_eq!(offset_of!(T, GetServerVariable), 160);
    assert_eq!(offset_of!(T, WriteClient), 168);
    assert_eq!(offset_of!(T, ReadClient), 176);
    assert_eq!(offset_of!(T, ServerSupportFunction), 184);
}

#[test]
fn version_info_and_send_header_ex_info() {
    assert_eq!(
        (
            size_of::<HSE_VERSION_INFO>(),
            align_of::<HSE_VERSION_INFO>()
        ),
        (260, 4)
    );
    assert_eq!(offset_of!(HSE_VERSION_INFO, dwExtensionVersion), 0);
    assert_eq!(offset_of!(HSE_VERSION_INFO, lpszExtensionDesc), 4);

    type H = HSE_SEND_HEADER_EX_INFO;
    assert_eq!((size_of::<H>(), align_of::<H>()), (32, 8));
    assert_eq!(offset_of!(H, pszStatus), 0);
    assert_eq!(offset_of!(H, pszHeader), 8);
    assert_eq!(offset_of!(H, cchStatus), 16);
    assert_eq!(offset_of!(H, cchHeader), 20);
    assert_eq!(offset_of!(H, fKeepConn), 24);
}

#[test]
fn transmit_file_info() {
    type T = HSE_TF_INFO;
    assert_eq!(size_of::<T>(), 72);
    assert_eq!(offset_of!(T, pfnHseIO), 0);
    assert_eq!(offset_of!(T, pContext), 8);
    assert_eq!(offset_of!(T, hFile), 16);
    assert_eq!(offset_of!(T, pszStatusCode), 24);
    assert_eq!(offset_of!(T, BytesToWrite), 32);
    assert_eq!(offset_of!(T, Offset), 36);
    assert_eq!(offset_of!(T, pHead), 40);
    assert_eq!(offset_of!(T, HeadLength), 48);
    assert_eq!(offset_of!(T, pTail), 56);
    assert_eq!(offset_of!(T, TailLength), 64);
    assert_eq!(offset_of!(T, dwFlags), 68);
}

#[test]
fn url_mapping_infos() {
    type M = HSE_URL_MAPEX_INFO;
    assert_eq!((size_of::<M>(), align_of::<M>()), (280, 4));
    assert_eq!(offset_of!(M, lpszPath), 0);
    assert_eq!(offset_of!(M, dwFlags), 260);
    assert_eq!(offset_of!(M, cchMatchingPath), 264);
    assert_eq!(offset_of!(M, cchMatchingURL), 268);
    assert_eq!(offset_of!(M, dwReserved1), 272);
    assert_eq!(offset_of!(M, dwReserved2), 276);

    type U = HSE_UNICODE_URL_MAPEX_INFO;
    assert_eq!(size_of::<U>(), 532);
    assert_eq!(offset_of!(U, lpszPath), 0);
    assert_eq!(offset_of!(U, dwFlags), 520);
    assert_eq!(offset_of!(U, cchMatchingPath), 524);
    assert_eq!(offset_of!(U, cchMatchingURL), 528);
}

#[test]
fn exec_url_structs() {
    type E = HSE_EXEC_URL_INFO;
    assert_eq!(size_of::<E>(), 48);
    assert_eq!(offset_of!(E, pszUrl), 0);
    assert_eq!(offset_of!(E, pszMethod), 8);
    assert_eq!(offset_of!(E, pszChildHeaders), 16);
    assert_eq!(offset_of!(E, pUserInfo), 24);
    assert_eq!(offset_of!(E, pEntity), 32);
    assert_eq!(offset_of!(E, dwExecUrlFlags), 40);

    type U = HSE_EXEC_URL_USER_INFO;
    assert_eq!(size_of::<U>(), 24);
    assert_eq!(offset_of!(U, hImpersonationToken), 0);
    assert_eq!(offset_of!(U, pszCustomUserName), 8);
    assert_eq!(offset_of!(U, pszCustomAuthType), 16);

    type N = HSE_EXEC_URL_ENTITY_INFO;
    assert_eq!(size_of::<N>(), 16);
    assert_eq!(offset_of!(N, cbAvailable), 0);
    assert_eq!(offset_of!(N, lpbData), 8);

    type S = HSE_EXEC_URL_STATUS;
    assert_eq!(size_of::<S>(), 8);
    assert_eq!(offset_of!(S, uHttpStatusCode), 0);
    assert_eq!(offset_of!(S, uHttpSubStatus), 2);
    assert_eq!(offset_of!(S, dwWin32Error), 4);
}

#[test]
fn custom_error_and_vector_send() {
    type C = HSE_CUSTOM_ERROR_INFO;
    assert_eq!(size_of::<C>(), 16);
    assert_eq!(offset_of!(C, pszStatus), 0);
    assert_eq!(offset_of!(C, uHttpSubError), 8);
    assert_eq!(offset_of!(C, fAsync), 12);

    type V = HSE_VECTOR_ELEMENT;
    assert_eq!(size_of::<V>(), 32);
    assert_eq!(offset_of!(V, ElementType), 0);
    assert_eq!(offset_of!(V, pvContext), 8);
    assert_eq!(offset_of!(V, cbOffset), 16);
    assert_eq!(offset_of!(V, cbSize), 24);

    type R = HSE_RESPONSE_VECTOR;
    assert_eq!(size_of::<R>(), 40);
    assert_eq!(offset_of!(R, dwFlags), 0);
    assert_eq!(offset_of!(R, pszStatus), 8);
    assert_eq!(offset_of!(R, pszHeaders), 16);
    assert_eq!(offset_of!(R, nElementCount), 24);
    assert_eq!(offset_of!(R, lpElementArray), 32);
}

#[test]
fn constants_match_the_sdk() {
    assert_eq!((HSE_VERSION_MAJOR << 16) | HSE_VERSION_MINOR, 0x0008_0000);
    assert_eq!(
        (
            HSE_STATUS_SUCCESS,
            HSE_STATUS_SUCCESS_AND_KEEP_CONN,
            HSE_STATUS_PENDING,
            HSE_STATUS_ERROR
        ),
        (1, 2, 3, 4)
    );
    assert_eq!(
        (
            HSE_REQ_SEND_RESPONSE_HEADER_EX,
            HSE_REQ_DONE_WITH_SESSION,
            HSE_REQ_SET_FLUSH_FLAG
        ),
        (1016, 4, 1043)
    );
    assert_eq!(
        (
            HSE_IO_SYNC,
            HSE_IO_ASYNC,
            HSE_IO_SEND_HEADERS,
            HSE_IO_NODELAY
        ),
        (1, 2, 8, 0x1000)
    );
    assert_eq!(
        (
            ERROR_INSUFFICIENT_BUFFER,
            ERROR_INVALID_INDEX,
            ERROR_INVALID_PARAMETER
        ),
        (122, 1413, 87)
    );
    assert_eq!(HSE_TERM_MUST_UNLOAD, 2);
}
